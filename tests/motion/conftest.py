from pathlib import Path

import pytest
import torch

from engine.pipelines.motion.pipeline import SVD_KEY, TRAJ_KEY, MotionPipeline
from engine.pipelines.motion.tiny import write_tiny_checkpoints


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("motion_ckpts")
    folders = {SVD_KEY: root / "svd", TRAJ_KEY: root / "traj"}
    write_tiny_checkpoints(folders, seed=0)
    return folders


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_folders: dict[str, Path]) -> MotionPipeline:
    torch.set_num_threads(2)
    return MotionPipeline.load(tiny_folders, "cpu", torch.float32)
