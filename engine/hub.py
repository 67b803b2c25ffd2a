"""Checkpoint specs (configs/models.yaml) -> local folders, via the Hugging Face Hub cache.

Resolution always goes through `huggingface_hub.snapshot_download` with the spec's allow-patterns, so only the files a
task needs download, and a cached pinned commit resolves with no network call. Every failure becomes a
`CheckpointError` whose message says what to do.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from engine.errors import CheckpointError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
MODELS_YAML = CONFIG_DIR / "models.yaml"
DownloadProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class CheckpointSpec:
    """One Hub repository (or the part of it a task needs)."""

    name: str
    title: str
    repo: str
    repo_type: str = "model"
    revision: str = "main"
    files: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    size_mb: float = 0.0
    gated: bool = False
    licence: str = ""

    @property
    def allow_patterns(self) -> list[str]:
        return [*self.files, *self.patterns]

    @property
    def url(self) -> str:
        prefix = "spaces/" if self.repo_type == "space" else ""
        return f"https://huggingface.co/{prefix}{self.repo}"

    def missing_files(self, folder: Path) -> list[str]:
        """Files/patterns of this spec that are absent from a local snapshot folder."""
        missing = [f for f in self.files if not (folder / f).is_file()]
        for pattern in self.patterns:
            parent = (folder / pattern).parent
            leaf = Path(pattern).name
            if not parent.is_dir() or not any(fnmatch.fnmatch(p.name, leaf) for p in parent.iterdir()):
                missing.append(pattern)
        return missing


def load_specs(path: Path = MODELS_YAML) -> dict[str, CheckpointSpec]:
    raw = yaml.safe_load(path.read_text()) or {}
    specs = {}
    for name, entry in raw.items():
        entry = dict(entry)
        entry["files"] = tuple(entry.get("files", ()))
        entry["patterns"] = tuple(entry.get("patterns", ()))
        specs[name] = CheckpointSpec(name=name, **entry)
    return specs


@dataclass
class CheckpointStatus:
    spec: CheckpointSpec
    cached: bool
    path: Path | None
    missing: list[str] = field(default_factory=list)


def _hub_error_classes() -> dict[str, type]:
    from huggingface_hub import errors

    return {name: getattr(errors, name) for name in (
        "GatedRepoError", "RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
        "LocalEntryNotFoundError", "OfflineModeIsEnabled", "DryRunError") if hasattr(errors, name)}


class Hub:
    """Resolves checkpoint specs against one Hub cache folder."""

    def __init__(self, specs: dict[str, CheckpointSpec] | None = None, cache_dir: str | Path | None = None,
                 offline: bool = False, token: str | None = None) -> None:
        self.specs = specs if specs is not None else load_specs()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.offline = offline or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        self._token = token

    @property
    def token(self) -> str | None:
        """Explicit token, else HF_TOKEN, else huggingface_hub's saved token (never logged)."""
        return self._token or os.environ.get("HF_TOKEN") or None

    def spec(self, name: str) -> CheckpointSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise CheckpointError(f"Unknown checkpoint '{name}'. Known: {', '.join(sorted(self.specs))}.") from None

    def _snapshot(self, spec: CheckpointSpec, *, local_only: bool, tqdm_class: Any = None,
                  dry_run: bool = False) -> Any:
        from huggingface_hub import snapshot_download

        return snapshot_download(
            spec.repo, repo_type=spec.repo_type, revision=spec.revision, allow_patterns=spec.allow_patterns,
            cache_dir=str(self.cache_dir) if self.cache_dir else None, token=self.token,
            local_files_only=local_only, tqdm_class=tqdm_class, dry_run=dry_run)

    def status(self, name: str) -> CheckpointStatus:
        """Whether every needed file is in the cache. Never touches the network."""
        spec = self.spec(name)
        try:
            folder = Path(self._snapshot(spec, local_only=True))
        except Exception:  # not cached at all (any flavour of "not found locally")
            return CheckpointStatus(spec, False, None, list(spec.allow_patterns))
        missing = spec.missing_files(folder)
        return CheckpointStatus(spec, not missing, folder, missing)

    def resolve(self, name: str, progress: DownloadProgress | None = None, task: str | None = None) -> Path:
        """Local folder holding the spec's files; downloads what is missing unless offline. `task` (one that uses
        the checkpoint) makes messages name the exact download command."""
        status = self.status(name)
        if status.cached:
            return status.path  # type: ignore[return-value]
        spec = status.spec
        if self.offline:
            raise CheckpointError(self._offline_message(status, task))
        self._check_disk(spec)
        try:
            folder = Path(self._snapshot(spec, local_only=False, tqdm_class=_progress_tqdm(progress, spec)))
        except Exception as exc:
            raise self._explain(spec, exc, task) from exc
        missing = spec.missing_files(folder)
        if missing:
            raise CheckpointError(
                f"{spec.repo} at revision {spec.revision} lacks {', '.join(missing)}. The repository changed or the "
                f"entry in configs/models.yaml is wrong; pin a revision that has these files.")
        return folder

    def _offline_message(self, status: CheckpointStatus, task: str | None) -> str:
        """Offline and not (fully) cached: which files are missing from which snapshot, and how to get them."""
        spec = status.spec
        lacks = f" (its cached snapshot {status.path} lacks {', '.join(status.missing)})" if status.path else ""
        return (f"'{spec.title}' ({spec.repo}) is not in the local cache and the app is offline{lacks}. Connect to "
                f"the internet and run {download_hint(task)} once, or copy a Hub cache that holds it into "
                f"{self.cache_dir or 'the default Hugging Face cache'}.")

    def plan(self, name: str) -> tuple[int, list[tuple[str, int, bool]]]:
        """(bytes still to download, [(file, size, will_download)]) from the Hub's dry run."""
        spec = self.spec(name)
        if self.offline:
            raise CheckpointError(
                f"Cannot plan the download of {spec.repo}: the app is offline. Run without --offline "
                f"(and without HF_HUB_OFFLINE=1) on a machine that reaches huggingface.co.")
        try:
            infos = self._snapshot(spec, local_only=False, dry_run=True)
        except Exception as exc:
            raise self._explain(spec, exc) from exc
        rows = [(i.filename, int(i.file_size), bool(i.will_download)) for i in infos]
        return sum(size for _, size, will in rows if will), rows

    def _check_disk(self, spec: CheckpointSpec) -> None:
        target = self.cache_dir or Path(os.environ.get("HF_HUB_CACHE") or Path.home() / ".cache" / "huggingface")
        probe = target
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        need = int(spec.size_mb * 1024 * 1024 * 1.05)
        if free < need:
            raise CheckpointError(
                f"Not enough disk space for {spec.repo}: about {need / 2**30:.1f} GiB needed, "
                f"{free / 2**30:.1f} GiB free at {probe}. Free some space or choose another folder with --cache-dir.")

    def _explain(self, spec: CheckpointSpec, exc: BaseException, task: str | None = None) -> CheckpointError:
        """Turn a huggingface_hub exception into a message that says what to do."""
        kinds = _hub_error_classes()

        def isa(name: str) -> bool:
            return name in kinds and isinstance(exc, kinds[name])

        if isa("GatedRepoError"):
            return CheckpointError(
                f"{spec.repo} is gated. Accept its licence at {spec.url} while logged in, create a read token at "
                f"https://huggingface.co/settings/tokens and set it as HF_TOKEN (a Space secret on Spaces), then retry.")
        if isa("RevisionNotFoundError"):
            return CheckpointError(f"Revision {spec.revision} of {spec.repo} does not exist. Fix the revision in "
                                   f"configs/models.yaml.")
        if isa("RepositoryNotFoundError"):
            hint = "" if self.token else " If it is private or gated, set HF_TOKEN."
            return CheckpointError(f"Repository {spec.repo} ({spec.repo_type}) was not found at {spec.url}.{hint} "
                                   f"Check the repo id in configs/models.yaml.")
        if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
            return CheckpointError(f"The disk filled up while downloading {spec.repo}. Free space or use --cache-dir.")
        # LocalEntryNotFoundError subclasses EntryNotFoundError: test "unreachable" first.
        if (isa("LocalEntryNotFoundError") or isa("OfflineModeIsEnabled") or isa("DryRunError")
                or isinstance(exc, (ConnectionError, TimeoutError))):
            return CheckpointError(
                f"Could not reach the Hugging Face Hub to download '{spec.title}' ({spec.repo}) and it is not in the "
                f"local cache. Check your internet connection (and HF_ENDPOINT/proxy settings), then run "
                f"{download_hint(task)}.")
        if isa("EntryNotFoundError"):
            return CheckpointError(f"A file needed from {spec.repo} is missing there: {exc}. Check configs/models.yaml.")
        return CheckpointError(f"Downloading {spec.repo} failed: {exc}")


def download_hint(task: str | None) -> str:
    """How to fetch a task's checkpoints, from the command line or the app."""
    command = f"python -m engine download {task or 'TASK'}"
    return f"`{command}` (or Download checkpoints in the Models tab)"


def _progress_tqdm(progress: DownloadProgress | None, spec: CheckpointSpec) -> Any:
    """A tqdm class that forwards byte progress to a (fraction, message) callback."""
    if progress is None:
        return None
    from tqdm.auto import tqdm

    class Forward(tqdm):  # type: ignore[misc]
        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self.total:
                progress(min(self.n / self.total, 1.0), f"Downloading {spec.repo}: {self.n / 2**20:.0f} MB")
            return shown

    return Forward


def human_size(num_bytes: float) -> str:
    if num_bytes < 2**20:
        return f"{num_bytes / 2**10:.0f} KB"
    if num_bytes < 2**30:
        return f"{num_bytes / 2**20:.0f} MB"
    return f"{num_bytes / 2**30:.1f} GB"

