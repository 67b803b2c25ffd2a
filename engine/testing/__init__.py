"""A hand-built Hugging Face Hub cache of tiny models, in the official layout, for offline tests and manual runs.

Each task package's `tiny.py` has `write_tiny_checkpoints(folders, seed)`, which fills one folder per checkpoint with
files of the published names, formats and key names, built from tiny configs of the real architectures with random
weights. This module lays those folders out as `<models|spaces>--org--name/{refs/main, snapshots/<commit>/...}` so the
production resolution path (snapshot_download with local_files_only) finds them.

    python -m engine.testing DIR [--task dance ...]    # then: python app.py --cache-dir DIR --offline
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterable

from engine.hub import CheckpointSpec, load_specs
from engine.tasks import discover_tasks

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def commit_for(spec: CheckpointSpec) -> str:
    """The pinned commit, or a stable fake one for specs that follow a branch."""
    if COMMIT_RE.match(spec.revision):
        return spec.revision
    return hashlib.sha1(f"tiny:{spec.repo}:{spec.revision}".encode()).hexdigest()


def snapshot_folder(cache_dir: Path, spec: CheckpointSpec) -> Path:
    repo_folder = cache_dir / f"{spec.repo_type}s--{spec.repo.replace('/', '--')}"
    folder = repo_folder / "snapshots" / commit_for(spec)
    folder.mkdir(parents=True, exist_ok=True)
    refs = repo_folder / "refs"
    refs.mkdir(exist_ok=True)
    ref_name = "main" if COMMIT_RE.match(spec.revision) else spec.revision
    (refs / ref_name).write_text(commit_for(spec))
    return folder


def build_tiny_hub(cache_dir: str | Path, tasks: Iterable[str] | None = None, seed: int = 0) -> Path:
    """Write tiny checkpoints for the given tasks (default: all) into cache_dir. Returns cache_dir."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    specs = load_specs()
    all_tasks = discover_tasks()
    for name in tasks or all_tasks:
        task = all_tasks[name]
        folders = {ck: snapshot_folder(cache_dir, specs[ck]) for ck in task.all_checkpoints}
        task.module("tiny").write_tiny_checkpoints(folders, seed=seed)
    return cache_dir
