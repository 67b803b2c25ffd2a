"""Previews run under the engine's policy: cached checkpoints only, never beside a running job (so a preview cannot
double peak memory), and a note instead of an error when they cannot run yet."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import Engine, EngineConfig, media, runtime


def opaque_sheet(folder: Path) -> Path:
    """A sheet with no transparency: the cut-out model would have to run."""
    path = folder / "sheet.png"
    media.write_png(path, np.full((64, 48, 3), 200, np.uint8))
    return path


def test_cutout_preview_waits_for_no_job_and_loads_nothing_while_one_runs(engine: Engine, tmp_path: Path) -> None:
    sheet = opaque_sheet(tmp_path)
    with runtime.device_lock(engine.device):
        busy = engine.preview("dance", "cutout", sheets=[sheet])
    assert busy.value is None and "A job is running" in busy.note
    done = engine.preview("dance", "cutout", sheets=[sheet])
    assert done.note == "" and done.value[0].shape == (64, 48, 4)


def test_a_preview_never_downloads(tmp_path: Path) -> None:
    empty_cache = Engine(EngineConfig(device="cpu", outputs=tmp_path / "out", cache_dir=tmp_path / "hub", offline=True))
    shown = empty_cache.preview("dance", "cutout", sheets=[opaque_sheet(tmp_path)])
    assert shown.value is None and "anime_seg" in shown.note and "downloaded" in shown.note
