"""One run of one task: seeding, a staging folder that becomes the run folder only on success, settings.json."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import random
import re
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from engine.errors import PreviewUnavailable
from engine.pipelines.base import CancelToken, Progress
from engine.tasks import MAX_SEED, Options

log = logging.getLogger("engine")
TRACKED_PACKAGES = ("torch", "numpy", "diffusers", "transformers", "huggingface-hub", "gradio", "av", "onnxruntime")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_seed(seed: int | None) -> int:
    """-1 or None means a fresh random seed (recorded in settings.json so the run can be repeated)."""
    return secrets.randbelow(MAX_SEED) if seed is None or seed < 0 else int(seed)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


@dataclass
class JobContext:
    """What an executor gets: validated inputs, parsed options, a folder to write into, and services."""

    task: str
    inputs: dict[str, Any]
    options: Options
    folder: Path
    progress: Progress
    cancel: CancelToken
    pipeline: Callable[..., Any]  # pipeline(): this task's, for the run's options; pipeline("task"): another's
    checkpoint: Callable[[str], Path]
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def record(self, name: str, value: Any) -> None:
        """A fact about this run worth keeping (frames filled, which input kind was chosen ...): written to
        settings.json under "details"."""
        self.details[name] = value

    def path(self, name: str) -> Path:
        """A path inside the run folder (the folder only becomes visible when the whole run succeeds)."""
        return self.folder / name

    def warn(self, message: str) -> None:
        """Something the user should know although the run goes on: logged, shown as progress, kept in
        settings.json and in the result (the tab shows it, the CLI prints it)."""
        log.warning("%s: %s", self.task, message)
        self.warnings.append(message)
        self.progress(0.0, f"Warning: {message}")


BLOCK_NAMES = re.compile(r"(down_blocks|up_blocks)\.\d+|mid_block")  # a diffusers UNet's or ControlNet's blocks


@contextlib.contextmanager
def cancellable(cancel: CancelToken, *networks: Any) -> Iterator[None]:
    """Honour Stop inside network calls too: while in this context, entering any down, mid or up block of these
    networks checks the token (one UNet call at full size takes minutes on a CPU; a block, seconds). The checks are
    removed on leaving, so cached networks shared with other jobs are left as they were."""
    handles = [module.register_forward_pre_hook(lambda *_: cancel.check())
               for network in networks for name, module in network.named_modules() if BLOCK_NAMES.fullmatch(name)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class PreviewContext:
    """What a task's preview helper (its job module's PREVIEWS) may use, under the preview policy: checkpoints only
    if already cached (a preview never starts a multi-gigabyte download), a device slot only if one is free and no job
    waits for it, and out of memory as a ResourceError."""

    def __init__(self, engine: Any, task: str) -> None:
        self._engine, self.task = engine, task
        self.spec = engine.task(task)
        self._slot: Any = None  # the device slot held inside `exclusive`

    def options(self, **given: Any) -> Options:
        """The task's options with these values (None: the default), coerced and checked as a run would."""
        return self.spec.parse_options({k: v for k, v in given.items() if v is not None})

    def checkpoint(self, name: str) -> Path:
        status = self._engine.hub.status(name)
        if not status.cached:
            raise PreviewUnavailable(f"This preview appears once the models are downloaded ({name}): run once or "
                                     "use the Models tab.")
        return status.path

    @property
    def device(self) -> Any:
        """The device of the slot held (inside `exclusive`; outside it, the engine's first), for a preview that
        loads one network itself."""
        return (self._slot or self._engine.slots.first).device

    @property
    def networks(self) -> Any:
        """That slot's network cache: a network a preview loads is kept and shared with the runs there."""
        return (self._slot or self._engine.slots.first).models

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold a free device slot while the preview computes (never waits for a running job)."""
        from engine import runtime

        with self._engine.slots.take_if_free() as slot:
            if slot is None:
                raise PreviewUnavailable("A job is running; the preview updates after it finishes and you edit again.")
            self._slot = slot
            try:
                with runtime.out_of_memory_as_resource_error(slot.models):
                    yield
            finally:
                self._slot = None

    @contextlib.contextmanager
    def pipeline(self, options: Options | None = None) -> Iterator[Any]:
        """The task's pipeline (for these options) on cached checkpoints, holding a device slot."""
        for name in self.spec.run_checkpoints(options):
            self.checkpoint(name)
        with self.exclusive():
            yield self._engine.pipeline(self.task, options=options, slot=self._slot)


@dataclass
class JobResult:
    folder: Path
    files: dict[str, Path]
    settings: dict[str, Any]


def describe_file(path: Path) -> dict[str, str]:
    """How settings.json records an input file: its name and content hash (never the server path it was read from,
    such as an upload's temporary folder)."""
    if not path.is_file():
        return {"name": path.name}
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(2**20), b""):
            digest.update(chunk)
    return {"name": path.name, "sha256": digest.hexdigest()}


def stop_on_sigterm() -> None:
    """Handle SIGTERM like Ctrl+C (KeyboardInterrupt), so a terminated run still discards its staging folder.
    Call from the main thread."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, interrupt)


def write_settings(path: Path, *, task: str, inputs: Mapping[str, Any], options: Mapping[str, Any],
                   checkpoints: Mapping[str, Any], device: str, dtype: str, timings: Mapping[str, float],
                   outputs: Mapping[str, Path], folder: Path, warnings: list[str] | None = None,
                   details: Mapping[str, Any] | None = None,
                   estimate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """settings.json: every option (seed included), input names, versions, checkpoint revisions, timings, the
    job's own details (see JobContext.record), and the cost model's figures (see engine.cost)."""

    def describe(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [describe(v) for v in value]
        if isinstance(value, dict):
            return {str(k): describe(v) for k, v in value.items()}
        if isinstance(value, Path):
            return value.name
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        return type(value).__name__

    settings = {
        "task": task,
        "created": datetime.now().isoformat(timespec="seconds"),
        "options": dict(options),
        "inputs": {k: describe(v) for k, v in inputs.items()},
        "outputs": {k: str(p.relative_to(folder)) if p.is_relative_to(folder) else p.name for k, p in outputs.items()},
        "checkpoints": dict(checkpoints),
        "device": device,
        "dtype": dtype,
        "versions": versions(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "warnings": list(warnings or []),
        "details": describe(dict(details or {})),
        "estimate": dict(estimate) if estimate else None,
    }
    path.write_text(json.dumps(settings, indent=2))
    return settings


class Stopwatch:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start
