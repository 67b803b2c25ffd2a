"""The outputs folder on disk: run folders that appear only when a run succeeds, staging folders swept when the
process that made them is gone, the outputs quota, and a full disk reported as such. Nothing here ever deletes a file a
run of this app did not create."""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import socket
from datetime import datetime
from pathlib import Path
from typing import Iterable

from engine.errors import InputError, ResourceError
from engine.hub import human_size

log = logging.getLogger("engine")


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
        # folders this run creates above the staging folder, innermost first: removed again if it fails and they
        # are still empty (a failed run leaves nothing behind)
        self._made = [p for p in (self.final.parent, *self.final.parent.parents) if not p.exists()]
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
        for folder in self._made:
            with contextlib.suppress(OSError):  # not empty: another run's results are there now
                folder.rmdir()


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


def earlier_runs(outputs: Path, task: str | None = None, limit: int = 200) -> list[dict]:
    """The settings.json of finished runs (of `task`, or all), newest first, at most `limit`, each with "folder" (its
    path) added; unreadable ones are left out."""
    def written(folder: Path) -> tuple[str, int]:  # runs started in the same second: by when they finished
        with contextlib.suppress(OSError):
            return folder.name[:15], (folder / "settings.json").stat().st_mtime_ns
        return folder.name[:15], 0

    found = []
    for folder in sorted(finished_runs(outputs), key=written, reverse=True):
        if task is not None and folder.parent.name != task:
            continue
        try:
            settings = json.loads((folder / "settings.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(settings, dict):
            found.append({**settings, "folder": str(folder)})
        if len(found) == limit:
            break
    return found


def prune_outputs(outputs: Path, quota_bytes: int, keep: Iterable[Path]) -> list[Path]:
    """Delete the oldest finished run folders until all of them fit in quota_bytes; never one in `keep` (the runs
    just made: with several devices, another job's run may be committed but not yet handed to its user) and never a
    staging folder (a running job's). Returns the folders removed."""
    kept = {Path(run).resolve() for run in keep}
    runs = [(run, folder_size(run)) for run in finished_runs(outputs)]
    total = sum(size for _, size in runs)
    pruned = []
    for run, size in runs:
        if total <= quota_bytes:
            break
        if run.resolve() in kept:
            continue
        shutil.rmtree(run, ignore_errors=True)
        log.info("Outputs quota: removed %s", run)
        total -= size
        pruned.append(run)
    return pruned
