"""Tiny MagicAnimate checkpoints in the published layout, written once per session."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.pipelines.pose.pipeline import PosePipeline
from engine.pipelines.pose.tiny import write_tiny_checkpoints

NAMES = ("sd15", "sd_vae_mse", "magicanimate")


def tiny_folders(root: Path) -> dict[str, Path]:
    folders = {name: root / name for name in NAMES}
    write_tiny_checkpoints(folders, seed=0)
    return folders


@pytest.fixture(scope="session")
def pose_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_folders(tmp_path_factory.mktemp("pose_ckpt"))


@pytest.fixture(scope="session")
def pose_pipeline(pose_folders: dict[str, Path]) -> PosePipeline:
    return PosePipeline.load(pose_folders, "cpu", torch.float32)
