"""Image to 3D orbit (SV3D_u / SV3D_p): cameras and guidance against hand-computed values, the published configs and
layouts, strict loading, the framing, and end to end through Engine.run, the CLI and the tab on the tiny
stabilityai/sv3d cache; bad input fails before any model loads."""
from __future__ import annotations

import contextlib
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from engine import Engine, JobResult, media
from engine.__main__ import main
from engine.errors import CheckpointError, InputError
from engine.pipelines.fourd import job, outputs
from engine.pipelines.fourd.config import built_in_config, parse_config
from engine.pipelines.fourd.sampler import guidance_scales
from engine.pipelines.fourd.sv3d import COND_AUG, N_VIEWS, camera_path, condition, triangle_guidance, vector
from engine.pipelines.fourd.sv3d_input import frame_image
from engine.pipelines.fourd.sv3d_pipeline import load_sv3d_networks
from engine.pipelines.fourd.spec import SPEC
from engine.pipelines.fourd.tiny import tiny_config_data
from engine.pipelines.fourd.video_unet import VideoUNet
from engine.weights import build_on_meta

SIZE = 64
FAST = {"size": SIZE, "steps": 1, "decode_chunk": 21, "watermark": False}


def object_picture(path: Path, height: int = 90, width: int = 120) -> Path:
    """An RGBA picture: an opaque orange box in a transparent field (no background removal needed)."""
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[30:60, 20:90] = (240, 140, 20, 255)
    Image.fromarray(rgba).save(path)
    return path


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return object_picture(tmp_path_factory.mktemp("sv3d") / "object.png")


# ----- cameras and guidance, by hand ----------------------------------------------------------------------------
def test_default_orbit_is_21_views_360_over_21_apart_ending_at_the_input_view() -> None:
    elevations, azimuths, polars, azims = camera_path(10.0)
    assert len(azimuths) == N_VIEWS and azimuths[0] == pytest.approx(360 / 21) and azimuths[-1] == 0.0
    assert azimuths[9] == pytest.approx(10 * 360 / 21)
    assert np.all(elevations == 10.0) and np.allclose(polars, math.radians(80.0))
    assert np.allclose(azims, np.radians(azimuths))  # relative to the last view, which is at 0


def test_custom_path_is_relative_to_the_last_view() -> None:
    azimuths = [float(a) for a in range(30, 30 + 20 * 15, 15)] + [20.0]
    elevations = [float(e) for e in range(-10, 11)]
    _, _, polars, azims = camera_path(0.0, elevations, azimuths)
    assert polars[0] == pytest.approx(math.radians(100.0)) and polars[-1] == pytest.approx(math.radians(80.0))
    assert azims[0] == pytest.approx(math.radians(10.0)) and azims[-1] == 0.0
    assert azims[-2] == pytest.approx(math.radians((315.0 - 20.0) % 360))


@pytest.mark.parametrize("elevations, azimuths, message", [
    ([10.0] * 3, [], "1 elevation, or a list of 21"), ([], [0.0] * 20, "list of 21 azimuths"),
    ([95.0] * 21, [], "between -90 and 90")])
def test_bad_camera_paths(elevations: list[float], azimuths: list[float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        camera_path(10.0, elevations, azimuths)


def test_triangle_guidance_rises_from_1_to_2_5_at_the_middle_view_and_falls_back() -> None:
    scales = guidance_scales(triangle_guidance(built_in_config("sv3d_u")), N_VIEWS, 1)
    expected = [1.0 + 1.5 * (1 - abs(k - 10) / 10) for k in range(21)]
    assert torch.allclose(scales, torch.tensor(expected), rtol=1e-6)


def test_vector_holds_cond_aug_then_the_cameras_and_the_uncond_half_keeps_it() -> None:
    config = parse_config(tiny_config_data("sv3d_p"), "sv3d_p")
    _, _, polars, azims = camera_path(10.0)
    vec = vector(config, polars, azims)
    assert vec.shape == (21, 128)
    freqs = torch.exp(-math.log(10000) * torch.arange(16) / 16)
    assert torch.allclose(vec[0, :32], torch.cat([torch.cos(COND_AUG * freqs), torch.sin(COND_AUG * freqs)]))
    half = torch.exp(-math.log(10000) * torch.arange(24) / 24)
    assert torch.allclose(vec[3, 32:32 + 24], torch.cos(torch.tensor(polars[3]).float() * half))
    assert torch.allclose(vec[3, 80:80 + 24], torch.cos(torch.tensor(azims[3]).float() * half))
    assert vector(parse_config(tiny_config_data("sv3d_u"), "sv3d_u"), polars, azims).shape == (21, 32)


def test_conditioning_draws_its_noise_first_and_zeroes_only_clip_and_concat_for_uncond() -> None:
    config = parse_config(tiny_config_data("sv3d_p"), "sv3d_p")
    seen: list[torch.Tensor] = []

    def clip(images: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(images), 32)

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            seen.append(images)
            return images[:, :1, ::8, ::8].repeat(1, 4, 1, 1)

    image = torch.zeros(1, 3, 64, 64)
    _, _, polars, azims = camera_path(10.0)
    generator = torch.Generator().manual_seed(7)
    cond, uncond = condition(config, clip, Encoder(), image, polars, azims, generator, torch.device("cpu"),
                             lambda *m: contextlib.nullcontext())
    expected = COND_AUG * torch.randn((1, 3, 64, 64), generator=torch.Generator().manual_seed(7))
    assert torch.equal(seen[0], image + expected)
    assert cond.crossattn.shape == (21, 1, 32) and cond.concat.shape == (21, 4, 8, 8)
    assert not uncond.crossattn.any() and not uncond.concat.any() and torch.equal(uncond.vector, cond.vector)


# ----- configs, network and loading ------------------------------------------------------------------------------
def test_published_configs_give_the_svd_unet_with_sv3d_vectors() -> None:
    u, p = built_in_config("sv3d_u"), built_in_config("sv3d_p")
    assert (u.unet.adm_in_channels, p.unet.adm_in_channels) == (256, 1280) and p.cameras and not u.cameras
    assert u.max_guidance == 2.5 and u.clip.width == 1280 and u.decoder.ch == 128
    unet = build_on_meta(lambda: VideoUNet(u.unet))
    # SVD's UNetSpatioTemporalConditionModel has 1,524,623,082 parameters with a 768-d added-time input; SV3D_u's
    # vector is 256-d: 512 x 1280 fewer weights in label_emb.0.0
    assert sum(t.numel() for t in unet.parameters()) == 1_524_623_082 - 512 * 1280
    names = set(unet.state_dict())
    assert {"input_blocks.1.0.time_stack.in_layers.2.weight", "input_blocks.1.1.time_stack.0.ff_in.net.0.proj.weight",
            "input_blocks.1.1.time_pos_embed.0.weight", "input_blocks.1.1.time_mixer.mix_factor",
            "input_blocks.1.0.time_mixer.mix_factor", "label_emb.0.0.weight", "out.2.weight"} <= names


def test_a_copy_of_the_original_yaml_format_is_read(tmp_path: Path) -> None:
    data = tiny_config_data("sv3d_p")
    data["model"]["params"]["network_config"]["params"]["adm_in_channels"] = 100
    with pytest.raises(InputError, match="adm_in_channels 100 must equal"):
        parse_config(data, "sv3d_p")
    data["model"]["params"]["network_config"]["params"]["merge_strategy"] = "fixed"
    with pytest.raises(InputError, match="merge_strategy"):
        parse_config(data, "sv3d_p")


def test_tiny_files_load_strictly_and_foreign_keys_are_refused(session_engine: Engine, tmp_path: Path) -> None:
    folder = session_engine.hub.status("sv3d_p").path
    config = parse_config(tiny_config_data("sv3d_p"), "sv3d_p")
    nets = load_sv3d_networks(folder / "sv3d_p.safetensors", config, "cpu", torch.float32)
    assert nets.decoder.conv_in.weight.dtype == torch.float32
    state = load_file(str(folder / "sv3d_p.safetensors"))
    assert any(k.startswith("conditioner.embedders.1.encoder.decoder.") for k in state)  # listed as unused
    save_file({**state, "conditioner.embedders.5.encoder.encoder.conv_in.weight": torch.zeros(1)},
              str(tmp_path / "stray.safetensors"))
    with pytest.raises(CheckpointError, match="does not look like an SV3D checkpoint"):
        load_sv3d_networks(tmp_path / "stray.safetensors", config, "cpu", torch.float32)
    state.pop("model.diffusion_model.out.2.weight")
    save_file(state, str(tmp_path / "short.safetensors"))
    with pytest.raises(CheckpointError, match="out.2.weight"):
        load_sv3d_networks(tmp_path / "short.safetensors", config, "cpu", torch.float32)


# ----- input framing and the watermark ------------------------------------------------------------------------------
def test_the_object_is_centred_in_a_square_of_the_pictures_height() -> None:
    rgba = np.zeros((80, 100, 4), np.uint8)
    rgba[10:30, 60:100] = (0, 0, 0, 255)  # a black 40 x 20 box at the right edge
    framed = frame_image(rgba, 80, removed=False)  # square side 80 = the height: no resampling
    dark = np.argwhere(framed.max(axis=-1) < 128)
    assert framed.shape == (80, 80, 3) and framed[0, 0].tolist() == [255, 255, 255]
    assert dark.min(axis=0).tolist() == [30, 20] and dark.max(axis=0).tolist() == [49, 59]


def test_sv3d_frames_are_watermarked_as_floats_then_truncated() -> None:
    from engine.watermark import embed_watermark

    samples = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    plain = outputs.sv3d_frames(samples, watermark=False)
    assert np.array_equal(plain, (samples.permute(0, 2, 3, 1) * 255).numpy().astype(np.uint8))
    marked = outputs.sv3d_frames(samples, watermark=True)
    expected = (embed_watermark(samples).permute(0, 2, 3, 1) * 255).numpy().astype(np.uint8)
    assert np.array_equal(marked, expected) and not np.array_equal(marked, plain)


# ----- end to end -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(session_engine: Engine, picture: Path) -> dict[str, JobResult]:
    azimuths = ", ".join(str(a) for a in range(20, 440, 20))
    return {"sv3d_u": session_engine.run("fourd", {"image": picture}, {**FAST, "model": "sv3d_u"}),
            "sv3d_p": session_engine.run("fourd", {"image": picture},
                                         {**FAST, "model": "sv3d_p", "elevation": 20.0, "azimuths": azimuths})}


def check_orbit(files: dict[str, Path]) -> None:
    frames = list(media.iter_video(files["orbit"]))
    assert len(frames) == 21 and frames[0].shape == (SIZE, SIZE, 3)
    assert media.video_info(files["orbit"]).fps == pytest.approx(10)
    with zipfile.ZipFile(files["frames"]) as archive:
        names = sorted(archive.namelist())
        assert names == [f"view_{v:02d}/000.png" for v in range(21)]
        with archive.open("view_20/000.png") as member:  # the last view is the input itself
            last = np.asarray(Image.open(member).convert("RGB")).astype(int)
    # x / 255 * 2 - 1 -> (x + 1) / 2 -> * 255 truncated to uint8, as the original: equal or 1 lower
    lower = media.read_image(files["processed_input"]) - last
    assert lower.min() >= 0 and lower.max() <= 1


@pytest.mark.parametrize("model", ["sv3d_u", "sv3d_p"])
def test_both_models_end_to_end(runs: dict[str, JobResult], model: str) -> None:
    result = runs[model]
    check_orbit(result.files)
    settings = json.loads(result.files["settings"].read_text())
    assert settings["options"]["model"] == model and model in settings["checkpoints"]
    assert settings["details"]["watermark"] is False
    if model == "sv3d_u":
        assert "cameras" not in result.files
    else:
        cameras = json.loads(result.files["cameras"].read_text())
        assert len(cameras) == 21 and cameras[0] == {"view": "view_00", "azimuth_deg": 20.0, "elevation_deg": 20.0}
        assert cameras[-1]["azimuth_deg"] == 420.0


def test_the_cli_with_a_camera_path(session_engine: Engine, picture: Path, tmp_path: Path) -> None:
    out = tmp_path / "result"
    args = ["fourd", "--image", str(picture), "--model", "sv3d_p", "--elevations", ", ".join(["15"] * 21),
            "--no-watermark", "--size", str(SIZE), "--steps", "1", "--out", str(out),
            "--cache-dir", str(session_engine.config.cache_dir), "--offline", "--device", "cpu"]
    assert main(args) == 0
    files = {p.stem: p for p in out.iterdir()}
    check_orbit(files)
    assert {c["elevation_deg"] for c in json.loads(files["cameras"].read_text())} == {15.0}
    assert main([*args[:5], "--azimuths", "1, 2, 3", *args[5:-7], "--out", str(tmp_path / "bad"), *args[-5:]]) == 2


def test_the_tab(session_engine: Engine, picture: Path) -> None:
    from gradio_client import Client, handle_file

    from tabs import build_app

    demo = build_app(session_engine)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(session_engine.config.outputs)])
    try:
        client = Client(demo.local_url, verbose=False)
        orbit, grid, views, _processed, download, *_rest, processed_image = client.predict(
            image=handle_file(str(picture)), model="sv3d_u", **FAST, api_name="/fourd")
        orbit = orbit["video"] if isinstance(orbit, dict) else orbit
        assert len(list(media.iter_video(Path(orbit)))) == 21 and grid is None and views == []
        assert any(str(d).endswith("frames.zip") for d in download) and Path(processed_image).is_file()
        preview = client.predict(image=handle_file(str(picture)), mask=None, remove_bg=False, size=SIZE,
                                 api_name="/fourd_image_preview")
        assert Path(preview).is_file()
    finally:
        demo.close()


# ----- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, given, message", [
    ("sv3d_u", "video", "give an image, not a video"), ("sv3d_p", "none", "Add a picture"),
    ("sv4d2", "image", "give a video, not an image")])
def test_the_right_input_for_the_model(tmp_path: Path, picture: Path, model: str, given: str, message: str) -> None:
    inputs = {"video": {"video": tmp_path / "clip.mp4"}, "image": {"image": picture}, "none": {}}[given]
    with pytest.raises(InputError, match=message):
        job.validate(inputs, SPEC.parse_options({"model": model}))


@pytest.mark.parametrize("options, message", [
    ({"azimuths": "0, 90"}, "list of 21 azimuths"), ({"elevations": "ten"}, "must be numbers"),
    ({"size": 100}, "multiple of 64")])
def test_bad_options_fail_in_validation(picture: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        job.validate({"image": picture}, SPEC.parse_options({"model": "sv3d_p", **options}))


def test_an_empty_picture_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(InputError, match="No object found"):
        job.validate({"image": tmp_path / "empty.png"}, SPEC.parse_options({"model": "sv3d_u"}))


# ----- SV4D (1.0): the SV3D_u orbit of frame 0, anchors, dense windows ----------------------------------------------
def test_sv4d_cameras_are_the_subsampled_orbit_relative_to_its_first_view() -> None:
    from engine.pipelines.fourd.sv4d1 import sv4d_cameras

    polars, azims, degrees = sv4d_cameras(10.0)
    assert np.allclose(polars, math.radians(80.0))  # absolute, unlike SV4D 2.0
    step = 360 / 21  # orbit views 2, 5, 7, 9, 12, 14, 16, 19 minus view 0 (17.1 deg) of the unrolled list
    assert np.allclose(degrees, [step * k for k in (2, 5, 7, 9, 12, 14, 16, 19)])
    assert np.allclose(azims, np.radians(degrees))


def test_sv4d_needs_sv3d_u_too() -> None:
    from engine.pipelines.fourd.pipeline import FourDPipeline

    assert SPEC.run_checkpoints(SPEC.parse_options({"model": "sv4d"})) == ("sv4d", "sv3d_u")
    with pytest.raises(CheckpointError, match="needs the sv3d_u checkpoint"):
        FourDPipeline.load({"sv4d": Path(".")}, "cpu", torch.float32)


def test_sv4d_end_to_end(session_engine: Engine, tmp_path: Path) -> None:
    from tests.fourd.conftest import object_frames, write_zip

    clip = write_zip(tmp_path / "clip.zip", object_frames(21))
    result = session_engine.run("fourd", {"video": clip}, {"model": "sv4d", "size": SIZE, "steps": 2,
                                                          "remove_bg": False, "decode_chunk": 40})
    views = sorted(name for name in result.files if name.startswith("view_"))
    assert views == [f"view_{v:02d}" for v in range(1, 9)]
    for name in views:
        assert len(list(media.iter_video(result.files[name]))) == 21
    cameras = json.loads(result.files["cameras"].read_text())
    assert cameras[1]["azimuth_deg"] == pytest.approx(2 * 360 / 21) and cameras[1]["elevation_deg"] == 10.0
    assert set(json.loads(result.files["settings"].read_text())["checkpoints"]) >= {"sv4d", "sv3d_u"}
