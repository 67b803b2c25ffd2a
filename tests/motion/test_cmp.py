from pathlib import Path

import pytest
import torch

from engine.errors import CheckpointError
from engine.models.mofa.cmp import CMPConfig, CMPNet, bin_expectation, load_cmp, read_cmp_state
from engine.pipelines.motion.pipeline import CMP_CHECKPOINT, TRAJ_KEY
from engine.pipelines.motion.tiny import TINY_CMP


def test_published_architecture_has_the_checkpoint_tensor_count_and_size():
    with torch.device("meta"):
        net = CMPNet(CMPConfig())
    keys = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    assert len(keys) == 383
    assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - 28.5) < 0.05
    for key in ("image_encoder.layer1.0.conv1.weight", "image_encoder.layer3.0.downsample.0.weight",
                "flow_encoder.features.5.running_var", "flow_decoder.decoder8.1.weight",
                "flow_decoder.fusion2.0.weight", "flow_decoder.skipconv4.1.bias", "flow_decoder.head.weight"):
        assert key in net.state_dict()
    assert net.flow_decoder.head.out_channels == 198


def test_strict_load_of_training_checkpoint_and_forward(tiny_folders):
    path = tiny_folders[TRAJ_KEY] / CMP_CHECKPOINT
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"step", "state_dict", "optimizer"} and all(k.startswith("module.") for k in raw["state_dict"])
    cmp = load_cmp(path, size=64)
    assert cmp.cfg == TINY_CMP
    loaded = cmp.model.state_dict()
    for key, value in raw["state_dict"].items():
        assert torch.equal(loaded[key.removeprefix("module.")], value)
    image = torch.rand(3, 3, 64, 64)
    sparse = torch.zeros(3, 2, 64, 64)
    mask = torch.zeros(3, 2, 64, 64)
    sparse[:, :, 10, 10] = 5
    mask[:, :, 10, 10] = 1
    flow = cmp(image, sparse, mask)
    assert flow.shape == (3, 2, 64, 64) and flow.dtype == torch.float32
    assert flow.abs().max() <= 50


@pytest.mark.parametrize("edit", ["drop", "extra", "shape", "no_state_dict"])
def test_mismatching_checkpoints_fail_loudly(tiny_folders, tmp_path: Path, edit: str):
    raw = torch.load(tiny_folders[TRAJ_KEY] / CMP_CHECKPOINT, weights_only=True)
    state = raw["state_dict"]
    if edit == "drop":
        state.pop("module.flow_decoder.head.weight")
    elif edit == "extra":
        state["module.flow_decoder.unused.weight"] = torch.zeros(1)
    elif edit == "shape":
        state["module.image_encoder.conv5.bias"] = torch.zeros(7)
    else:
        raw = {"step": 1}
    path = tmp_path / "ckpt.pth.tar"
    torch.save(raw, path)
    with pytest.raises(CheckpointError):
        load_cmp(path)


def test_missing_file_is_a_checkpoint_error(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not found"):
        read_cmp_state(tmp_path / "absent.pth.tar")


def test_bin_expectation_gives_bin_centres_and_zero_for_uniform():
    nbins, fmax = 99, 50.0
    logits = torch.zeros(1, 2 * nbins, 1, 2)
    logits[0, 80, 0, 0] = 1e4           # x: bin 80
    logits[0, nbins + 3, 0, 0] = 1e4    # y: bin 3
    flow = bin_expectation(logits, nbins, fmax)
    step = 100 / 99
    assert flow[0, 0, 0, 0].item() == pytest.approx(80 * step - 50 + step / 2, abs=1e-4)
    assert flow[0, 1, 0, 0].item() == pytest.approx(3 * step - 50 + step / 2, abs=1e-4)
    assert flow[0, :, 0, 1].abs().max().item() < 1e-4  # uniform -> symmetric centres average to 0
