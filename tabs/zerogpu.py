"""ZeroGPU on Hugging Face Spaces: each job borrows a GPU for one call, sized from the job.

How ZeroGPU runs a function decorated with `spaces.GPU` (spaces 0.51, `spaces/zero/wrappers.py`): the main process
asks the scheduler for a GPU for `duration` seconds (a number, or a callable given the call's arguments), forks a
worker (multiprocessing "fork"; a worker may be reused for later calls), pickles the arguments over a queue, moves
every tensor the main process placed on "cuda" to the real GPU (in the main process CUDA is emulated: tensors stay
in host memory), runs the function there and pickles its return value (or its gr.Error) back. Progress and toasts
are forwarded to the main process's queue.

So a task job is split in two here:
- main process, no GPU held: inputs and options are checked (a bad upload costs no GPU time), checkpoints are
  downloaded and the pipeline's networks are built into the engine's network cache; the GPU time to ask for is
  computed from the job's size (frames, denoising steps, working size);
- GPU worker: the same handler runs; the engine finds the networks in its cache (inherited through the fork) and
  ZeroGPU has moved their weights to the GPU, so only the sampling runs on GPU time.
Results cross the process boundary as files: the handler returns paths inside the run folder, which the worker wrote
to the shared disk. Stop crosses it as a file too (`request_stop`): the worker watches for it and cancels its job.

Without SPACES_ZERO_GPU every function here returns the handler unchanged.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import logging
import math
import os
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import gradio as gr
import torch

from engine import Engine, cost, limits, media, user_message
from engine.errors import AnimateError, InputError

log = logging.getLogger("tabs")
MIN_SECONDS = 60  # a floor: every call also pays the worker's start and the weights' move to the GPU
MARGIN = 1.5  # the estimates below are not measured on ZeroGPU's H200 slice (no GPU was available to calibrate)
STOP_POLL_S = 0.25


@dataclass(frozen=True)
class GpuPace:
    """Estimated GPU seconds of a task on ZeroGPU's half H200 (bf16): `per_unit` per frame x denoising step at
    512x512 (scaled by the working area), plus `fixed` per call (CUDA start, weights to the GPU, encoders, VAE).
    `frames` is used when a job's frame count cannot be read from its inputs or options."""

    per_unit: float
    fixed: float
    frames: int


# Estimates from published model sizes, not measurements: SVD-XT at 512x512x25 with MOFA's ControlNet and CFG
# ~1.5 s/step; MagicAnimate's 16-frame windows (stride 12) with ReferenceNet, ControlNet and CFG ~2 s per window-step;
# SV4D 2.0 ~1 s per UNet call at 576 (two windows of 12 frames); CoNR and DensePose are one pass per frame.
PACES: dict[str, GpuPace] = {
    "motion": GpuPace(per_unit=0.06, fixed=30, frames=25),
    "face": GpuPace(per_unit=0.13, fixed=30, frames=25),
    "pose": GpuPace(per_unit=0.15, fixed=30, frames=64),
    "fourd": GpuPace(per_unit=0.10, fixed=40, frames=21),
    "dance": GpuPace(per_unit=0.08, fixed=20, frames=300),
    "densepose": GpuPace(per_unit=0.10, fixed=15, frames=250),
}
DEFAULT_PACE = GpuPace(per_unit=0.15, fixed=30, frames=64)
# The cost model's unit is the README's benchmark CPU (2 cores, bf16): MOFA at 512x25 takes 330 s/step there against
# the ~1.5 s/step above, MagicAnimate 225 s per window-step against ~2 s. An estimate, as PACES.
CPU_SECONDS_PER_GPU_SECOND = 150


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """True on ZeroGPU hardware (spaces reads the same variable the same way)."""
    return environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def _gpu_decorator() -> Callable[..., Any]:
    import spaces

    return spaces.GPU


def gpu(fn: Callable[..., Any], duration: int = MIN_SECONDS) -> Callable[..., Any]:
    """A short GPU helper (a preview): on ZeroGPU it runs on a worker for at most `duration` seconds."""
    if not enabled():
        return fn
    return _gpu_decorator()(duration=duration)(fn)


def task_handler(engine: Engine, task: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    """The Run handler of a task tab, ZeroGPU-ready (elsewhere: `handler` itself).

    `handler` has one parameter per task input and option (by name), then `request` and `progress` (as
    tabs.widgets.named_handler makes them); the returned function has the same signature, so Gradio shows the same
    API. It prepares the job in the main process, then runs `handler` on a GPU worker for `gpu_seconds` seconds.
    """
    if not enabled():
        return handler
    signature = inspect.signature(handler)
    engine.task(task)  # an unknown task fails at build time

    def on_gpu(seconds: int, stop_file: str, owner: Any, args: tuple, kwargs: dict) -> Any:
        # GNU OpenMP's thread pool does not survive fork: once the main process has run a parallel CPU op (building
        # the networks does), the worker's first parallel CPU op would hang. One thread avoids the pool.
        torch.set_num_threads(1)
        with _stop_watch(engine, Path(stop_file), owner):
            return handler(*args, **kwargs)

    on_gpu.__qualname__ = on_gpu.__name__ = f"{task}_on_gpu"
    gpu_call = _gpu_decorator()(duration=lambda seconds, *_: seconds)(on_gpu)

    @functools.wraps(handler)
    def main_side(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        request, progress = values.pop("request", None), values.pop("progress", None)
        owner = getattr(request, "session_hash", None)
        report = (lambda f, m: progress(f, desc=m)) if progress is not None else (lambda f, m: None)
        try:
            seconds = prepare(engine, task, values, report)
        except AnimateError as exc:  # one console line, as the tabs log a refused job (no traceback)
            log.warning("%s: %s", task, " ".join(user_message(exc).split()))
            raise gr.Error(user_message(exc), duration=None, print_exception=False) from exc
        with _stop_file(owner) as stop_file:
            return gpu_call(seconds, str(stop_file), owner, args, kwargs)

    main_side.__signature__ = signature  # type: ignore[attr-defined]
    return main_side


def prepare(engine: Engine, task: str, values: Mapping[str, Any],
            progress: Callable[[float, str], None] = lambda f, m: None) -> int:
    """In the main process, before any GPU is held: check the inputs and options, download the checkpoints and
    build the pipeline's networks into the engine's cache. Returns the GPU seconds to ask for."""
    spec = engine.task(task)
    inputs = {item.name: values.get(item.name) or None for item in spec.inputs if item.name in values}
    options = {option.name: values[option.name] for option in spec.options if option.name in values}
    with limits.applied(engine.config.limits):
        resolved = spec.parse_options(options)
        spec.job.validate(dict(inputs), resolved)
        seconds = gpu_seconds(engine, task, inputs, resolved)
    engine.pipeline(task, progress, resolved)
    return seconds


def gpu_seconds(engine: Engine, task: str, inputs: Mapping[str, Any], options: Mapping[str, Any]) -> int:
    """GPU time to ask for, MARGIN x the best figure there is, at least MIN_SECONDS: the engine's estimate for this
    device once earlier runs here have measured its pace (engine.cost); else the cost model's benchmark-CPU seconds
    over CPU_SECONDS_PER_GPU_SECOND; else `fixed + per_unit x frames x steps x area / 512^2` from PACES."""
    pace = PACES.get(task, DEFAULT_PACE)
    estimate = _modelled_seconds(engine, task, inputs, options)
    if estimate is None:
        frames = job_frames(engine, task, inputs, options) or pace.frames
        side = float(options.get("size") or 512)
        estimate = pace.per_unit * frames * int(options.get("steps") or 1) * (side / 512) ** 2
    return max(MIN_SECONDS, math.ceil(MARGIN * (pace.fixed + estimate)))


def _modelled_seconds(engine: Engine, task: str, inputs: Mapping[str, Any], options: Mapping[str, Any]
                      ) -> float | None:
    try:
        measured = engine.estimate(task, inputs, dict(options))
        if measured is not None and measured.seconds is not None:
            return measured.seconds
        work = cost.work(task, inputs, options)
    except AnimateError:
        return None  # the inputs were validated; a cost model that cannot read them leaves the pace table
    return work.seconds / CPU_SECONDS_PER_GPU_SECOND if work is not None and work.seconds is not None else None


def job_frames(engine: Engine, task: str, inputs: Mapping[str, Any], options: Mapping[str, Any]) -> int:
    """Frames the job makes, read without decoding: the `frames` option, else the first video input's frame count
    at the `fps` option, else a landmarks file's or a zip's entry count. 0 when unknown."""
    if options.get("frames"):
        return int(options["frames"])
    spec = engine.task(task)
    for item in spec.inputs:
        value = inputs.get(item.name)
        if not value or isinstance(value, (list, tuple)):
            continue
        path = Path(value)
        count = _file_frames(path, options.get("fps"), engine.config.limits.max_video_frames)
        if count:
            return count
    return 0


def _file_frames(path: Path, fps: Any, most: int) -> int:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            import numpy as np

            return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                return sum(1 for info in archive.infolist() if not info.is_dir())
        if suffix in (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v"):
            info = media.video_info(path)
            count = info.frames or media.count_video_frames(path, most)
            return min(most, media.resampled_count(count, info.fps, float(fps) if fps else None))
    except (InputError, OSError, ValueError, zipfile.BadZipFile):
        return 0  # validation has accepted the file; an unreadable count only means the default is used
    return 0


# ------------------------------------------------------------------------------------------------ Stop across processes
_STOP_DIR = Path(tempfile.gettempdir()) / f"animate-zerogpu-{os.getpid()}"
_in_flight: dict[Any, Path] = {}
_in_flight_lock = threading.Lock()


def _stop_path(owner: Any) -> Path:
    return _STOP_DIR / (hashlib.sha256(repr(owner).encode()).hexdigest()[:24] + ".stop")


@contextlib.contextmanager
def _stop_file(owner: Any) -> Iterator[Path]:
    """The file whose appearance tells the GPU worker to cancel this session's job (main process)."""
    path = _stop_path(owner)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a Stop from an earlier job of this session
    if owner is not None:
        with _in_flight_lock:
            _in_flight[owner] = path
    try:
        yield path
    finally:
        if owner is not None:
            with _in_flight_lock:
                _in_flight.pop(owner, None)
        path.unlink(missing_ok=True)


def request_stop(owner: Any) -> bool:
    """Stop the session's job running on a GPU worker (main process). True if one was running."""
    with _in_flight_lock:
        path = _in_flight.get(owner)
    if path is None:
        return False
    path.touch()
    return True


@contextlib.contextmanager
def _stop_watch(engine: Engine, stop_file: Path, owner: Any) -> Iterator[None]:
    """In the worker: while the handler runs, cancel the owner's job once the stop file appears."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(STOP_POLL_S):
            if stop_file.exists():
                engine.cancel(owner)  # repeated: the job may not have registered yet

    watcher = threading.Thread(target=watch, name="zerogpu-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
