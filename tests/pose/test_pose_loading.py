"""Strict loading: the three temporal_attention.ckpt layouts, the 24-key-short appearance encoder, bad files."""
import argparse
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

from engine.errors import CheckpointError
from engine.pipelines.pose.appearance import load_appearance_encoder
from engine.pipelines.pose.tiny import TEMPORAL, TINY_UNET, rewrite_temporal_checkpoint
from engine.pipelines.pose.weights import load_video_unet
from engine.weights import DIFFUSERS_WEIGHTS

MISSING_24 = {
    "conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias",
    "up_blocks.3.attentions.2.proj_out.weight", "up_blocks.3.attentions.2.proj_out.bias",
} | {f"up_blocks.3.attentions.2.transformer_blocks.0.{name}" for name in (
    "attn1.to_q.weight", "attn1.to_k.weight", "attn1.to_v.weight", "attn1.to_out.0.weight", "attn1.to_out.0.bias",
    "norm2.weight", "norm2.bias",
    "attn2.to_q.weight", "attn2.to_k.weight", "attn2.to_v.weight", "attn2.to_out.0.weight", "attn2.to_out.0.bias",
    "norm3.weight", "norm3.bias",
    "ff.net.0.proj.weight", "ff.net.0.proj.bias", "ff.net.2.weight", "ff.net.2.bias")}


@pytest.fixture
def unet_folders(pose_folders: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A private copy of what the UNet loader reads: sd15/unet/config.json and the temporal checkpoint."""
    folders = {"sd15": tmp_path / "sd15", "magicanimate": tmp_path / "magicanimate"}
    shutil.copytree(pose_folders["sd15"] / "unet", folders["sd15"] / "unet")
    shutil.copytree(pose_folders["magicanimate"] / TEMPORAL[0], folders["magicanimate"] / TEMPORAL[0])
    return folders


def load(folders: dict[str, Path]) -> dict[str, torch.Tensor]:
    unet = load_video_unet(folders["sd15"] / "unet", folders["magicanimate"].joinpath(*TEMPORAL), "cpu", torch.float32)
    return unet.state_dict()


def test_all_three_temporal_layouts_load_the_same_weights(unet_folders: dict[str, Path]) -> None:
    raw_file = torch.load(unet_folders["magicanimate"].joinpath(*TEMPORAL), weights_only=True)
    raw = load(unet_folders)
    assert set(raw) == set(raw_file) and all(torch.equal(raw[k], raw_file[k]) for k in raw)
    rewrite_temporal_checkpoint(unet_folders, "wrapped")
    assert all(torch.equal(v, raw[k]) for k, v in load(unet_folders).items())
    rewrite_temporal_checkpoint(unet_folders, "motion_only")  # spatial weights now come from sd15/unet
    rewritten = torch.load(unet_folders["magicanimate"].joinpath(*TEMPORAL), weights_only=True)
    assert "unet.down_blocks.0.motion_modules.0.temporal_transformer.norm.weight" in rewritten
    assert all(torch.equal(v, raw[k]) for k, v in load(unet_folders).items())


def test_legacy_torch_save_format_loads(unet_folders: dict[str, Path]) -> None:
    path = unet_folders["magicanimate"].joinpath(*TEMPORAL)
    state = torch.load(path, weights_only=True)
    path.unlink()
    torch.save(state, path, _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    assert all(torch.equal(v, state[k]) for k, v in load(unet_folders).items())


def edit_checkpoint(folders: dict[str, Path], edit) -> None:  # noqa: ANN001
    path = folders["magicanimate"].joinpath(*TEMPORAL)
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


MOTION_KEY = "up_blocks.1.motion_modules.2.temporal_transformer.proj_out.weight"


def test_missing_motion_weights_fail_loudly(unet_folders: dict[str, Path]) -> None:
    edit_checkpoint(unet_folders, lambda s: s.pop(MOTION_KEY))
    with pytest.raises(CheckpointError, match="lacks motion-module weights.*proj_out"):
        load(unet_folders)


def test_unknown_motion_key_fails_loudly(unet_folders: dict[str, Path]) -> None:
    edit_checkpoint(unet_folders, lambda s: s.update({"down_blocks.0.motion_modules.0.extra.weight": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match="unexpected.*extra"):
        load(unet_folders)


def test_motion_only_checkpoint_needs_sd15_unet_weights(unet_folders: dict[str, Path]) -> None:
    edit_checkpoint(unet_folders, lambda s: [s.pop(k) for k in list(s) if "motion_modules" not in k])
    with pytest.raises(CheckpointError, match="only the motion modules"):
        load(unet_folders)


def test_wrong_shape_fails_loudly(unet_folders: dict[str, Path]) -> None:
    edit_checkpoint(unet_folders, lambda s: s.update({MOTION_KEY: torch.zeros(3, 3)}))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load(unet_folders)


def test_pickled_objects_are_refused(unet_folders: dict[str, Path]) -> None:
    torch.save({"state_dict": argparse.Namespace(a=1)}, unet_folders["magicanimate"].joinpath(*TEMPORAL))
    with pytest.raises(CheckpointError, match="was refused: it holds code"):
        load(unet_folders)


def test_appearance_file_lacks_exactly_the_24_keys(pose_folders: dict[str, Path]) -> None:
    stored = set(load_file(str(pose_folders["magicanimate"] / "appearance_encoder" / DIFFUSERS_WEIGHTS)))
    with torch.device("meta"):
        full = set(UNet2DConditionModel.from_config(TINY_UNET).state_dict())
    assert len(MISSING_24) == 24 and MISSING_24 <= full
    assert stored == full - MISSING_24
    encoder = load_appearance_encoder(pose_folders["magicanimate"] / "appearance_encoder", "cpu", torch.float32)
    assert set(encoder.unet.state_dict()) == stored
    assert not any(t.is_meta for t in encoder.unet.state_dict().values())


def test_appearance_encoder_refuses_a_complete_unet(pose_folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "appearance_encoder"
    shutil.copytree(pose_folders["magicanimate"] / "appearance_encoder", folder)
    state = load_file(str(folder / DIFFUSERS_WEIGHTS))
    state["conv_out.weight"] = torch.zeros(4, 32, 3, 3)
    save_file(state, str(folder / DIFFUSERS_WEIGHTS))
    with pytest.raises(CheckpointError, match="unexpected.*conv_out"):
        load_appearance_encoder(folder, "cpu", torch.float32)
