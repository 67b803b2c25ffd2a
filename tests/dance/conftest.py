"""Tiny CoNR files in the Space layout, written once per session."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.pipelines.dance.pipeline import DancePipeline
from engine.pipelines.dance.tiny import write_conr

SIZE = 128  # tiny working size (a multiple of 128)


@pytest.fixture(scope="session")
def tiny_space(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("conr_space")
    write_conr(folder, seed=0)
    return folder


@pytest.fixture(scope="session")
def pipeline(tiny_space: Path) -> DancePipeline:
    return DancePipeline.load({"conr": tiny_space}, "cpu", torch.float32)


@pytest.fixture(scope="session")
def sheets(tiny_space: Path) -> list[np.ndarray]:
    """Two of the four example views (the tiny tests use M=2)."""
    folder = tiny_space / "character_sheet_ponytail_example"
    return [np.array(Image.open(folder / f"{i}.png")) for i in range(2)]
