"""One run of one task: seeding, a staging folder that becomes the run folder only on success, settings.json."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from engine.errors import InputError, PreviewUnavailable, ResourceError
from engine.hub import human_size
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
    pipeline: Callable[[], Any]
    checkpoint: Callable[[str], Path]
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        """A path inside the run folder (the folder only becomes visible when the whole run succeeds)."""
        return self.folder / name

    def warn(self, message: str) -> None:
        """Something the user should know although the run goes on: logged, shown as progress, kept in
        settings.json and in the result (the tab shows it, the CLI prints it)."""
        log.warning("%s: %s", self.task, message)
        self.warnings.append(message)
        self.progress(0.0, f"Warning: {message}")


class PreviewContext:
    """What a task's preview helper (its job module's PREVIEWS) may use, under the preview policy: checkpoints only
    if already cached (a preview never starts a multi-gigabyte download), the device only if no job holds it, and
    out of memory as a ResourceError."""

    def __init__(self, engine: Any, task: str) -> None:
        self._engine, self.task = engine, task
        self.spec = engine.task(task)

    def options(self, **given: Any) -> Options:
        """The task's options with these values (None: the default), coerced and checked as a run would."""
        return self.spec.parse_options({k: v for k, v in given.items() if v is not None})

    def checkpoint(self, name: str) -> Path:
        status = self._engine.hub.status(name)
        if not status.cached:
            raise PreviewUnavailable(f"This preview appears once the models are downloaded ({name}): run once or "
                                     "use the Models tab.")
        return status.path

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the one-job device slot while the preview computes (never waits for a running job)."""
        from engine import runtime

        if not runtime.GPU_LOCK.acquire(blocking=False):
            raise PreviewUnavailable("A job is running; the preview updates after it finishes and you edit again.")
        try:
            with runtime.out_of_memory_as_resource_error(self._engine.models):
                yield
        finally:
            runtime.GPU_LOCK.release()

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[Any]:
        """The task's pipeline on cached checkpoints, holding the device slot."""
        for name in self.spec.checkpoints:
            self.checkpoint(name)
        with self.exclusive():
            yield self._engine.pipeline(self.task)


@dataclass
class JobResult:
    folder: Path
    files: dict[str, Path]
    settings: dict[str, Any]


def new_run_name(task: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{task}-{secrets.token_hex(3)}"


RUN_NAME = re.compile(r"\d{8}-\d{6}-[\w-]+-[0-9a-f]{6}")
STAGING_PREFIX = ".staging-"
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)
STAGING_MARKER = ".animate-staging.json"  # inside each staging folder: which process owns it (see sweep_staging)


class RunFolder:
    """Write into a hidden staging folder; on success it becomes the run folder, on failure it is deleted.

    The default destination is outputs/<task>/<timestamp>-<task>-<id>. With `destination` (the CLI's --out DIR) the
    folder must be new or empty (nothing of the user's is ever overwritten) and the finished files are moved into it
    one by one with atomic renames. Creating the staging folder is the check that the destination is writable, so
    make a RunFolder before any other work.
    """

    def __init__(self, outputs: Path, task: str, destination: Path | None = None) -> None:
        if destination is not None:
            check_destination(destination)
        self.name = new_run_name(task)
        self.final = destination or outputs / task / self.name
        self.staging = self.final.parent / f"{STAGING_PREFIX}{self.name}"
        self._made_parent = not self.final.parent.exists()  # removed again if the run fails and leaves it empty
        try:
            self.staging.mkdir(parents=True)
            write_staging_marker(self.staging)
        except OSError as exc:
            self.discard()
            full = disk_full_error(exc, self.final.parent)
            if full:
                raise full from exc
            if exc.errno not in NOT_WRITABLE:
                raise
            raise InputError(f"Cannot write results under {self.final.parent}: {exc.strerror or exc}. "
                             "Choose a folder you can write to.") from exc

    def commit(self) -> Path:
        if not self.final.exists():
            self.staging.rename(self.final)
            (self.final / STAGING_MARKER).unlink(missing_ok=True)
            return self.final
        entries = [e for e in self.staging.iterdir() if e.name != STAGING_MARKER]
        taken = [e.name for e in entries if os.path.lexists(self.final / e.name)]
        if taken:  # written into the folder while the run worked: keep the user's files
            raise InputError(f"{self.final} gained {', '.join(taken)} during the run; nothing was overwritten. "
                             "Run again with --out set to a new folder.")
        for entry in entries:
            entry.rename(self.final / entry.name)
        self.discard()
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._made_parent:
            with contextlib.suppress(OSError):  # not empty: another run's results are there now
                self.final.parent.rmdir()


def check_destination(folder: Path) -> None:
    """An --out folder must be new or empty: refuse before any work rather than overwrite the user's files."""
    if folder.is_dir():
        if any(folder.iterdir()):
            raise InputError(f"The output folder {folder} is not empty; results never overwrite existing files. "
                             "Give --out a new (or empty) folder.")
    elif os.path.lexists(folder):
        raise InputError(f"--out {folder} is a file, not a folder. Give --out a new (or empty) folder.")


def write_staging_marker(staging: Path) -> None:
    marker = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now().isoformat()}
    (staging / STAGING_MARKER).write_text(json.dumps(marker))


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (when unsure: yes, so nothing is swept)."""
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        try:
            import psutil
        except ImportError:
            return True
        return psutil.pid_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def stale_staging(staging: Path) -> bool:
    """A staging folder with our marker whose process (on this host) is gone. No marker, never stale."""
    try:
        marker = json.loads((staging / STAGING_MARKER).read_text())
        pid, host = int(marker["pid"]), marker["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return host == socket.gethostname() and pid != os.getpid() and not process_alive(pid)


def sweep_staging(*folders: Path) -> list[Path]:
    """Delete the staging folders that killed runs left in these folders (a run's finally never ran on SIGKILL or
    power loss). Returns the folders removed."""
    swept = []
    for folder in folders:
        for staging in sorted(folder.glob(STAGING_PREFIX + "*")) if folder.is_dir() else ():
            if staging.is_dir() and not staging.is_symlink() and stale_staging(staging):
                shutil.rmtree(staging, ignore_errors=True)
                log.info("Removed %s, left by a run that was killed", staging)
                swept.append(staging)
    return swept


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(exc: BaseException, folder: Path, written: Path | None = None) -> ResourceError | None:
    """A ResourceError for a failure whose cause (or its causes) is a full disk or quota, naming the folder, its free
    space and how much the run had written (`written`: its staging folder); None for any other failure."""
    cause: BaseException | None = exc
    while cause is not None and not (isinstance(cause, OSError) and cause.errno in DISK_FULL):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    size = folder_size(written) if written is not None and written.is_dir() else 0
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    return ResourceError(
        f"The disk holding {folder} is full ({cause.strerror or 'no space left'}; {human_size(free)} free there): the "
        f"run had written {human_size(size)} of results when it stopped and was discarded. Free more than that "
        f"there (old runs can go) or choose an output folder on another disk (--out), then run again.")


def folder_size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            total += path.lstat().st_size if path.is_file() or path.is_symlink() else 0
    return total


def finished_runs(outputs: Path) -> list[Path]:
    """Run folders under outputs/<task>/ (named as new_run_name names them, with settings.json), oldest first.
    Staging folders are hidden and never listed."""
    runs = [p for p in outputs.glob("*/*") if RUN_NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink()
            and (p / "settings.json").is_file()]
    return sorted(runs, key=lambda p: (p.name[:15], p.name))


def prune_outputs(outputs: Path, quota_bytes: int, keep: Path) -> list[Path]:
    """Delete the oldest finished run folders until all of them fit in quota_bytes; never `keep` (the run just
    made) and never a staging folder (a running job's). Returns the folders removed."""
    runs = [(run, folder_size(run)) for run in finished_runs(outputs)]
    total = sum(size for _, size in runs)
    pruned = []
    for run, size in runs:
        if total <= quota_bytes:
            break
        if run.resolve() == keep.resolve():
            continue
        shutil.rmtree(run, ignore_errors=True)
        log.info("Outputs quota: removed %s", run)
        total -= size
        pruned.append(run)
    return pruned


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
                   outputs: Mapping[str, Path], folder: Path, warnings: list[str] | None = None) -> dict[str, Any]:
    """settings.json: every option (seed included), input names, versions, checkpoint revisions, timings."""

    def describe(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [describe(v) for v in value]
        if isinstance(value, dict):
            return {str(k): describe(v) for k, v in value.items()}
        if isinstance(value, Path):
            return value.name
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
