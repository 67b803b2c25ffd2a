"""The model-zoo pickle: read with a restricted unpickler (arrays and containers only), loaded strictly."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import CheckpointError
from engine.pipelines.densepose.checkpoint import WEIGHTS, read_state
from engine.pipelines.densepose.model import DensePoseRCNN
from engine.pipelines.densepose.pipeline import DensePosePipeline, load_network
from engine.pipelines.densepose.tiny import tiny_network, write_pickle, write_tiny_checkpoints


class RunsCode:
    def __reduce__(self) -> tuple:
        return os.system, ("echo pwned > /dev/null",)


def test_the_full_size_network_has_the_published_files_335_arrays_and_63_9_m_values() -> None:
    with torch.device("meta"):
        state = DensePoseRCNN().state_dict()
    assert len(state) == 335 and round(sum(t.numel() for t in state.values()) / 1e5) == 639
    assert {"backbone.bottom_up.stem.conv1.norm.running_var", "backbone.bottom_up.res5.2.conv3.weight",
            "backbone.bottom_up.res2.0.shortcut.weight", "backbone.fpn_lateral5.bias",
            "backbone.fpn_output2.weight",
            "proposal_generator.rpn_head.anchor_deltas.weight", "roi_heads.box_head.fc2.weight",
            "roi_heads.box_predictor.bbox_pred.bias", "roi_heads.decoder.p5.4.weight",
            "roi_heads.densepose_head.body_conv_fcn8.bias",
            "roi_heads.densepose_predictor.v_lowres.weight"} <= set(state)


def test_a_published_layout_file_loads_strictly_and_old_extra_keys_are_ignored(tmp_path: Path) -> None:
    model = tiny_network(3)
    arrays = {name: t.numpy() for name, t in model.state_dict().items()}
    arrays["pixel_mean"] = np.zeros((3, 1, 1), np.float32)  # older model-zoo files hold these
    arrays["proposal_generator.anchor_generator.cell_anchors.0"] = np.zeros((3, 4), np.float32)
    path = tmp_path / "model.pkl"
    with open(path, "wb") as stream:
        pickle.dump({"model": arrays, "__author__": "Detectron2 Model Zoo"}, stream, protocol=2)
    loaded = load_network(path, "cpu", torch.float32)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_pickle_that_runs_code_is_refused_before_running(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"x": RunsCode()}}))
    with pytest.raises(CheckpointError, match="'posix.system' is not allowed|'os.system' is not allowed"):
        read_state(path)


def test_a_torch_checkpoint_is_refused(tmp_path: Path) -> None:
    zipped, legacy = tmp_path / "zip.pkl", tmp_path / "legacy.pkl"
    torch.save({"model": {"x": torch.zeros(2)}}, zipped)
    torch.save({"model": {"x": torch.zeros(2)}}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="could not be read"):
        read_state(zipped)  # a zip archive: not a pickle at all
    with pytest.raises(CheckpointError, match="not a detectron2 model-zoo file"):
        read_state(legacy)  # its first pickle is torch's magic number
    plain = tmp_path / "tensor.pkl"
    plain.write_bytes(pickle.dumps({"model": {"x": torch.zeros(2)}}))  # a tensor rebuilt by torch's own function
    with pytest.raises(CheckpointError, match="refused: global 'torch"):
        read_state(plain)


def test_object_arrays_and_foreign_contents_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"model": {"x": np.array([1, "a"], dtype=object)}}, protocol=4))
    with pytest.raises(CheckpointError):
        read_state(path)
    path.write_bytes(pickle.dumps({"weights": {}}, protocol=4))
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        read_state(path)


def test_a_truncated_or_mismatched_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    write_tiny_checkpoints({"densepose": folder})
    file = folder / WEIGHTS
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="could not be read"):
        DensePosePipeline.load({"densepose": folder}, "cpu", torch.float32)
    model = tiny_network()
    state = model.state_dict()
    del state["roi_heads.box_head.fc2.bias"]
    short = tmp_path / "short.pkl"
    write_pickle(short, _StateOnly(state))
    with pytest.raises(CheckpointError, match="missing key"):
        load_network(short, "cpu", torch.float32)


class _StateOnly(torch.nn.Module):
    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._state = state

    def state_dict(self, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self._state
