"""Loading the single-file SV4D 2.0 checkpoint: parts by prefix, strictly, expected-unused keys explicit, the
conditioning encoder once when its copies are equal, configs from the original YAML format, the network cache."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from engine.errors import CheckpointError, InputError
from engine.pipelines.fourd import checkpoint as ck
from engine.pipelines.fourd.config import BUILT_IN, OPEN_CLIP_ARCHS, built_in_config, parse_model_config, read_model_config
from engine.pipelines.fourd.pipeline import FourDPipeline, load_networks
from engine.pipelines.fourd.tiny import tiny_config_data, write_tiny_model
from engine.runtime import ModelCache


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sv4d2")
    write_tiny_model(folder, "sv4d2", torch.Generator().manual_seed(0))
    return folder


def rewritten(tmp_path: Path, folder: Path, change) -> Path:
    """A copy of the tiny sv4d2 folder whose state went through `change(state)`."""
    state = load_file(str(folder / "sv4d2.safetensors"))
    change(state)
    save_file(state, str(tmp_path / "sv4d2.safetensors"))
    (tmp_path / "sv4d2.yaml").write_text((folder / "sv4d2.yaml").read_text())
    return tmp_path


def test_the_file_holds_the_published_parts(tiny_folder: Path) -> None:
    keys = load_file(str(tiny_folder / "sv4d2.safetensors")).keys()
    for prefix in ("model.diffusion_model.input_blocks.3.1.time_mix_blocks.0.", "conditioner.embedders.0.open_clip."
                   "model.visual.transformer.resblocks.1.attn.in_proj_weight", "conditioner.embedders.0.open_clip.model."
                   "token_embedding.weight", "conditioner.embedders.5.encoder.decoder.", "first_stage_model.decoder.up.0"):
        assert any(k.startswith(prefix) for k in keys), prefix
    assert not any(k.startswith("first_stage_model.encoder") for k in keys)  # the first stage has no encoder


def test_strict_load_shares_one_encoder_for_equal_copies(tiny_folder: Path) -> None:
    nets = load_networks(tiny_folder / "sv4d2.safetensors", read_model_config(tiny_folder / "sv4d2.yaml", "sv4d2"), "cpu",
                         torch.float32)
    assert nets.frames_encoder is nets.view_encoder
    assert set(nets.named()) == {"unet", "clip", "cond_encoder", "decoder"}
    assert nets.decoder.conv_out.weight.dtype == torch.float32
    stored = load_file(str(tiny_folder / "sv4d2.safetensors"))
    assert torch.equal(nets.unet.out[2].weight, stored["model.diffusion_model.out.2.weight"])
    assert torch.equal(nets.clip.visual.proj, stored["conditioner.embedders.0.open_clip.model.visual.proj"])


def test_different_encoder_copies_load_separately(tiny_folder: Path, tmp_path: Path) -> None:
    def change(state: dict) -> None:
        state[ck.VIEW_ENCODER + "quant_conv.bias"] = state[ck.VIEW_ENCODER + "quant_conv.bias"] + 1

    folder = rewritten(tmp_path, tiny_folder, change)
    nets = load_networks(folder / "sv4d2.safetensors", read_model_config(folder / "sv4d2.yaml", "sv4d2"), "cpu", torch.float32)
    assert nets.view_encoder is not nets.frames_encoder
    assert "cond_view_encoder" in nets.named()
    assert torch.equal(nets.view_encoder.quant_conv.bias, nets.frames_encoder.quant_conv.bias + 1)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("model.diffusion_model.out.2.bias"), "missing key"),
    (lambda s: s.update({"model.diffusion_model.extra.weight": torch.zeros(1)}), "unexpected key"),
    (lambda s: s.update({"conditioner.embedders.9.weight": torch.zeros(1)}), "does not look like an SV4D"),
])
def test_strictness(tiny_folder: Path, tmp_path: Path, change, message: str) -> None:
    folder = rewritten(tmp_path, tiny_folder, change)
    with pytest.raises(CheckpointError, match=message):
        load_networks(folder / "sv4d2.safetensors", read_model_config(folder / "sv4d2.yaml", "sv4d2"), "cpu", torch.float32)


def test_a_config_of_another_size_is_a_clear_checkpoint_error(tiny_folder: Path) -> None:
    with pytest.raises(CheckpointError, match="does not match the expected network.*--model-config"):
        load_networks(tiny_folder / "sv4d2.safetensors", built_in_config("sv4d2"), "cpu", torch.float32)


def test_configs_in_the_original_format() -> None:
    config = built_in_config("sv4d2")
    assert (config.n_time, config.n_view, config.unet.use_3d_attention, config.clip.width) == (12, 4, True, 1280)
    eight = built_in_config("sv4d2_8views")
    assert (eight.n_time, eight.n_view, eight.unet.use_3d_attention) == (5, 8, False)
    data = yaml.safe_load((BUILT_IN / "sv4d2.yaml").read_text())
    data["model"]["params"]["conditioner_config"]["params"]["emb_models"][0]["params"][
        "open_clip_embedding_config"]["params"]["arch"] = OPEN_CLIP_ARCHS["ViT-H-14"]  # open_clip's mapping format
    assert parse_model_config(data).clip == config.clip
    data = tiny_config_data("sv4d2")
    data["model"]["params"]["network_config"]["params"]["adm_in_channels"] = 100
    with pytest.raises(InputError, match="adm_in_channels"):
        parse_model_config(data)
    data["model"]["params"]["conditioner_config"]["params"]["emb_models"][4]["params"]["n_cond_frames"] = "${NOPE}"
    with pytest.raises(InputError, match="NOPE"):
        parse_model_config(data)
    with pytest.raises(InputError, match="missing or has a wrong value"):
        parse_model_config({"model": {"params": {}}})


def test_pipeline_finds_the_config_beside_the_weights_or_takes_one(tiny_folder: Path, tmp_path: Path) -> None:
    pipeline = FourDPipeline.load({"sv4d2": tiny_folder}, "cpu", torch.float32)
    assert pipeline.config.source == "sv4d2.yaml" and pipeline.config.unet.model_channels == 32
    other = tmp_path / "mine.yaml"
    data = tiny_config_data("sv4d2")
    other.write_text(yaml.safe_dump(data))
    pipeline.use_config(other)  # same hyper-parameters: the networks stay
    assert pipeline.config.source == "sv4d2.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(InputError, match="bad.yaml"):
        pipeline.use_config(bad)
    with pytest.raises(CheckpointError, match="sv4d2_8views"):
        FourDPipeline.load({"sv4d2_8views": tiny_folder}, "cpu", torch.float32)


def test_networks_are_cached_and_shared(tiny_folder: Path) -> None:
    cache = ModelCache(2**34)
    first = FourDPipeline.load({"sv4d2": tiny_folder}, "cpu", torch.float32, networks=cache).networks()
    second = FourDPipeline.load({"sv4d2": tiny_folder}, "cpu", torch.float32, networks=cache).networks()
    assert all(first[name] is second[name] for name in first)
    assert set(cache.builds.values()) == {1} and len(cache.builds) == 4
