"""FourDPipeline on the tiny sv4d2 checkpoint: one run end to end (views per frame, cameras, windows overwriting
shared frames, the next window conditioned on the generated views), cancellation, bad inputs, offload staging."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import InputError, JobCancelled
from engine.pipelines.base import CancelToken
from engine.pipelines.fourd import pipeline as module
from engine.pipelines.fourd.pipeline import FourDPipeline
from engine.pipelines.fourd.tiny import write_tiny_model
from engine.tasks import Options
from tests.offload_check import run_checking_stages

OPTIONS = Options({"model": "sv4d2", "elevation": 0.0, "steps": 1, "seed": 23, "size": 64, "encode_chunk": 48,
                   "decode_chunk": 48})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sv4d2_pipeline")
    write_tiny_model(folder, "sv4d2", torch.Generator().manual_seed(1))
    return folder


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (21, 64, 64, 3), dtype=np.uint8)


def test_one_run_makes_every_view_of_every_frame(folder: Path, frames: np.ndarray,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = FourDPipeline.load({"sv4d2": folder}, "cpu", torch.float32, offload="model")
    conditioned: list[torch.Tensor | None] = []
    decoded: list[torch.Tensor] = []
    original_decode = pipeline._decode

    def decode(*args: object) -> torch.Tensor:
        decoded.append(original_decode(*args))
        return decoded[-1]

    class Recording(module.Conditioner):
        def __call__(self, motion, views, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN204
            conditioned.append(None if views is None else views.clone())
            return super().__call__(motion, views, *args, **kwargs)

    monkeypatch.setattr(pipeline, "_decode", decode)
    monkeypatch.setattr(module, "Conditioner", Recording)
    reports: list[str] = []
    result = run_checking_stages(pipeline.offload, pipeline.networks(), lambda: pipeline(
        {"frames": frames, "model_config": None}, OPTIONS, progress=lambda f, m: reports.append(m)))
    assert result.views.shape == (4, 21, 64, 64, 3) and result.views.dtype == np.uint8
    assert result.azimuths == (60.0, 120.0, 180.0, 240.0) and not result.input_view_included
    assert len(decoded) == 2 and conditioned[0] is None  # windows [0..11], [9..20]; the first has no view images
    assert torch.equal(conditioned[1], decoded[0][9 * 4:10 * 4] * 2 - 1)  # window 2 sees the views of frame 9 from window 1
    for t, (window, row) in {0: (0, 0), 8: (0, 8), 9: (1, 0), 20: (1, 11)}.items():  # frames 9-11: window 2 wins
        expected = ((decoded[window][row * 4:(row + 1) * 4] * 2 - 1 + 1) / 2 * 255).permute(0, 2, 3, 1).numpy().astype(np.uint8)
        assert np.array_equal(result.views[:, t], expected)
    assert any("Window 2/2: denoising step 1/1" in m for m in reports)


def test_cancel_and_bad_inputs(folder: Path, frames: np.ndarray) -> None:
    pipeline = FourDPipeline.load({"sv4d2": folder}, "cpu", torch.float32)
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        pipeline({"frames": frames, "model_config": None}, OPTIONS, cancel=token)
    with pytest.raises(InputError, match="21 RGB frames of 64x64"):
        pipeline({"frames": frames[:20], "model_config": None}, OPTIONS)
    with pytest.raises(InputError, match="multiple of 64"):
        pipeline({"frames": frames, "model_config": None}, OPTIONS.replace(size=96))
    with pytest.raises(InputError, match="loaded for sv4d2"):
        pipeline({"frames": frames, "model_config": None}, OPTIONS.replace(model="sv4d2_8views"))
