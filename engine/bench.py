"""One benchmark harness for every task: speed and peak memory of its networks with random weights (no download).

A task's `bench.py` holds `SETTINGS` (its benchmark's settings and their defaults) and
`bench(harness, size, **settings) -> {measurement: value}`. `run` picks the device and dtype exactly as the engine
does, checks the size and settings, and wraps the task's measurements in one report for every task:

    {"task", "size", "device" (GPU name or cpu/mps), "dtype" (fp32/bf16/fp16), "offload", "threads" (CPU threads),
     "settings": {every setting, defaults included}, "timings_s": {timer: total seconds of the timed blocks},
     "peak_memory_gib", "peak_memory_kind", "results": {the task's own figures: per step, per frame, ...}}
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, Mapping, TypeVar

import torch
from torch import nn

from engine import runtime
from engine.errors import InputError
from engine.tasks import TaskSpec
from engine.testing.weights import randomise
from engine.weights import frozen_on

M = TypeVar("M", bound=nn.Module)
SIZES = ("full", "tiny")  # full: the published architectures; tiny: the test-size ones (seconds on a CPU)
Measurements = dict[str, float | int | str]


class Harness:
    """What a task's benchmark runs with: device, dtype and offload mode, seeded random networks, timers that
    accumulate into `timings`, and the peak memory."""

    def __init__(self, device: torch.device, dtype: torch.dtype, offload: str = "none", seed: int = 0) -> None:
        self.device, self.dtype, self.offload = device, dtype, offload
        self.timings: dict[str, float] = {}
        self.generator = torch.Generator(device).manual_seed(seed)

    def network(self, factory: Callable[[], M], dtype: torch.dtype | None = None) -> M:
        """`factory()` built directly on the device, with random weights, cast (default: the harness's dtype)
        and frozen for inference."""
        with self.device:
            module = factory()
        return frozen_on(randomise(module, self.generator), self.device, dtype or self.dtype)

    @contextlib.contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Add the block's seconds to `timings[name]`; the device finishes queued work before and after."""
        self.synchronize()
        start = time.perf_counter()
        yield
        self.synchronize()
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def stamper(self) -> tuple[list[tuple[str, float]], Callable[[float, str], None]]:
        """A progress callback that notes (message, time) once the device has finished the work before it, and the
        list it fills: the stages of a pipeline timed through its own progress reports."""
        stamps: list[tuple[str, float]] = []

        def stamp(fraction: float, message: str) -> None:
            self.synchronize()
            stamps.append((message, time.perf_counter()))

        return stamps, stamp

    def reset_peak(self) -> None:
        """Start the peak memory count afresh (after building and warming up). The process's peak resident memory
        cannot be reset, so on other devices this does nothing."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> tuple[float, str]:
        """(GiB, what was measured)."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**30, "cuda max_memory_allocated"
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
        return kib / 2**20, "process max RSS"


def run(spec: TaskSpec, device: str = "auto", size: str = "full", dtype: str = "auto", offload: str = "none",
        **settings: Any) -> dict[str, Any]:
    """Run the task's benchmark; dtype "auto" is the engine's choice (bf16/fp16 on a GPU, fp32 on a CPU)."""
    if size not in SIZES:
        raise InputError(f"Unknown benchmark size '{size}'. Use {' or '.join(SIZES)}.")
    module = spec.module("bench")
    chosen = _settings(spec.name, module.SETTINGS, settings)
    torch_device = runtime.choose_device(device)
    harness = Harness(torch_device, runtime.choose_dtype(dtype, torch_device), offload)
    results = module.bench(harness, size, **chosen)
    peak, peak_kind = harness.peak_memory()
    return {"task": spec.name, "size": size, "device": _device_name(torch_device),
            "dtype": runtime.dtype_name(harness.dtype), "offload": offload, "threads": torch.get_num_threads(),
            "settings": chosen, "timings_s": {name: round(s, 4) for name, s in harness.timings.items()},
            "peak_memory_gib": round(peak, 3), "peak_memory_kind": peak_kind, "results": results}


def _settings(task: str, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of the task's benchmark: given ones checked against their default's type, the rest defaults."""
    for name in given:
        if name not in defaults:
            raise InputError(f"The {task} benchmark has no --{name} setting. "
                             f"Its settings: {', '.join('--' + known for known in defaults) or 'none'}.")
    return {name: _typed(task, name, given.get(name, default), type(default)) for name, default in defaults.items()}


def _typed(task: str, name: str, value: Any, kind: type) -> Any:
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"The {task} benchmark's --{name} must be {kind.__name__}; got {value!r}.") from None


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
