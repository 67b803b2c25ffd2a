"""Device and dtype choice, the model cache, the one-GPU-job lock, and out-of-memory handling."""
from __future__ import annotations

import contextlib
import gc
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator

import torch

from engine.errors import InputError, ResourceError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def choose_device(preference: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. An explicit choice that is unavailable is an InputError."""
    preference = (preference or "auto").lower()
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is visible to PyTorch. "
                         "Install a CUDA build of torch or use --device auto.")
    if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps was asked for but Apple MPS is not available. Use --device auto.")
    if preference not in ("cuda", "mps", "cpu"):
        raise InputError(f"Unknown device '{preference}'. Use auto, cuda, mps or cpu.")
    return torch.device(preference)


def choose_dtype(preference: str, device: torch.device) -> torch.dtype:
    """auto: CUDA bf16 where supported else fp16; MPS fp16; CPU fp32."""
    preference = (preference or "auto").lower()
    if preference == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if preference not in DTYPES:
        raise InputError(f"Unknown dtype '{preference}'. Use auto, bf16, fp16 or fp32.")
    return DTYPES[preference]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def modules_of(obj: Any) -> list[torch.nn.Module]:
    """nn.Modules held by a pipeline: itself, its module attributes, and modules inside dict attributes."""
    if isinstance(obj, torch.nn.Module):
        return [obj]
    found: list[torch.nn.Module] = []
    for value in getattr(obj, "__dict__", {}).values():
        if isinstance(value, torch.nn.Module):
            found.append(value)
        elif isinstance(value, dict):
            found += [m for m in value.values() if isinstance(m, torch.nn.Module)]
    return found


def model_bytes(obj: Any) -> int:
    """Bytes held by the parameters and buffers of a pipeline's modules (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for module in modules_of(obj):
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def default_budget(device: torch.device) -> int:
    """Bytes the model cache may hold: 85% of GPU memory, or 60% of free RAM on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory * 0.85)
    import psutil

    return int(psutil.virtual_memory().available * 0.6)


@dataclass
class _Entry:
    value: Any
    size: int


class ModelCache:
    """Keeps built pipelines by key while a byte budget allows; evicts the least recently used.

    Thread-safe: concurrent `get` calls for the same key build it once (others wait); different keys build in
    parallel only if the caller allows it (the engine serialises GPU work with its own lock anyway).
    """

    def __init__(self, budget_bytes: int, on_evict: Callable[[Hashable, Any], None] | None = None,
                 sizer: Callable[[Any], int] = model_bytes) -> None:
        self.budget = budget_bytes
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}
        self._on_evict = on_evict
        self._sizer = sizer

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    @property
    def used(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values())

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key].value
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._entries:  # built by another thread while we waited
                    self._entries.move_to_end(key)
                    return self._entries[key].value
            value = build()
            size = self._sizer(value)
            with self._lock:
                self._make_room(size, keep=key)
                self._entries[key] = _Entry(value, size)
                self._building.pop(key, None)
            return value

    def _make_room(self, incoming: int, keep: Hashable) -> None:
        while self._entries and sum(e.size for e in self._entries.values()) + incoming > self.budget:
            old_key, entry = self._entries.popitem(last=False)
            if self._on_evict:
                self._on_evict(old_key, entry.value)
        gc.collect()
        empty_device_caches()

    def clear(self) -> None:
        with self._lock:
            while self._entries:
                old_key, entry = self._entries.popitem(last=False)
                if self._on_evict:
                    self._on_evict(old_key, entry.value)
        gc.collect()
        empty_device_caches()


def empty_device_caches() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.empty_cache()


GPU_LOCK = threading.Lock()
"""Only one job uses the accelerator at a time (tabs, CLI and API calls alike)."""


@contextlib.contextmanager
def out_of_memory_as_resource_error(cache: ModelCache | None = None) -> Iterator[None]:
    """Turn a device out-of-memory error into a ResourceError after freeing what can be freed."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        if cache is not None:
            cache.clear()
        gc.collect()
        empty_device_caches()
        raise ResourceError(
            "The device ran out of memory. Try a smaller output size or fewer frames, start the app with "
            "--offload model (or sequential), or use --dtype fp16/bf16 on a GPU. Cached models were freed; "
            "you can retry now.") from exc
