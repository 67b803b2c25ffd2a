"""Pose animation end to end through the engine, the CLI and the Gradio API, on the tiny MagicAnimate cache."""
from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from engine import Engine, limits, media
from engine.__main__ import main
from engine.errors import InputError
from engine.pipelines.pose.palette import viridis
from engine.pipelines.pose.job import border_colour, fit_reference, read_motion
from tabs import build_app

SIZE = 64  # the tiny models' size; the published models work at 512
TINY = {"size": SIZE, "steps": 1, "context": 4, "overlap": 1, "seed": 3}  # one window, one step
DENSEPOSE_BACKGROUND = (65, 0, 81)  # viridis(0), the background of MagicAnimate's example videos


def frames_of(path: Path) -> list[np.ndarray]:
    return media.read_video(path)[0]


def smooth(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A low-frequency random picture (survives H.264 nearly unchanged, unlike noise)."""
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def close(a: np.ndarray, b: np.ndarray, tolerance: float = 6.0) -> bool:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()) < tolerance


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pose_inputs")
    rng = np.random.default_rng(0)
    # A wide reference in three vertical bands: crop, pad and stretch each give a different square.
    reference = np.zeros((SIZE, 96, 3), np.uint8)
    reference[:, :32], reference[:, 32:64], reference[:, 64:] = (220, 30, 30), (30, 220, 30), (30, 30, 220)
    media.write_png(folder / "reference.png", reference)
    motion = [viridis(smooth(rng, SIZE, SIZE)[..., 0]) for _ in range(20)]  # DensePose-like colours
    media.write_mp4(folder / "motion20.mp4", motion, fps=25)
    media.write_mp4(folder / "motion4.mp4", motion[:4], fps=25)
    # 8 flat grey frames at 50 fps, frame k at level 20 k: resampling to 25 fps must keep frames 0, 2, 4, 6.
    media.write_mp4(folder / "grey50.mp4", [np.full((48, 80, 3), 20 * k, np.uint8) for k in range(8)], fps=50)
    media.write_mp4(folder / "densepose50.mp4", [viridis(np.full((48, 80), 20 * k)) for k in range(8)], fps=50)
    return {"reference": folder / "reference.png", "motion20": folder / "motion20.mp4",
            "motion4": folder / "motion4.mp4", "grey50": folder / "grey50.mp4",
            "densepose50": folder / "densepose50.mp4"}


# ---------------------------------------------------------------------------------------------------- fitting

def test_fit_modes_of_the_reference(files: dict[str, Path]) -> None:
    reference = media.read_image(files["reference"])
    crop, pad, stretch = (fit_reference(reference, SIZE, mode) for mode in ("crop", "pad", "stretch"))
    assert crop.shape == pad.shape == stretch.shape == (SIZE, SIZE, 3)
    red, green = np.array([(220, 30, 30)] * SIZE), np.array([(30, 220, 30)] * SIZE)
    # Pillow-bicubic resizing (as the original) rings by a few levels next to band edges.
    np.testing.assert_allclose(crop[:, 12], red, atol=12)  # the red band is 16 px wide after a centre crop
    np.testing.assert_allclose(crop[:, 20], green, atol=12)
    np.testing.assert_allclose(stretch[:, 20], red, atol=12)  # ... and 21 px wide when squeezed
    bars = border_colour(reference)
    np.testing.assert_array_equal(pad[0], np.broadcast_to(bars, (SIZE, 3)))  # letterbox in the border colour
    np.testing.assert_allclose(pad[SIZE // 2, 0], red[0], atol=12)


def test_motion_is_resampled_to_fps_and_padded_with_its_background(files: dict[str, Path], tmp_path: Path) -> None:
    frames = read_motion(files["grey50"], 25, SIZE, "stretch")
    assert len(frames) == 4 and frames[0].shape == (SIZE, SIZE, 3)
    assert [round(float(f.mean()) / 20) for f in frames] == [0, 2, 4, 6]
    assert len(read_motion(files["grey50"], 50, SIZE, "stretch")) == 8
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:] = DENSEPOSE_BACKGROUND
    wide[10:30, 30:50] = (250, 250, 0)  # a "body" in the middle
    media.write_mp4(tmp_path / "wide.mp4", [wide] * 2, fps=25)
    padded = read_motion(tmp_path / "wide.mp4", 25, SIZE, "pad")[0]
    assert np.abs(padded[:8].astype(int) - DENSEPOSE_BACKGROUND).max() <= 8  # bars in viridis(0), not black


def test_motion_decoding_stops_once_past_the_frame_limit(files: dict[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A container that does not store its frame count passes the early check; decoding must still stop."""
    fitted: list[tuple[int, ...]] = []
    real_fit = media.fit
    monkeypatch.setattr(media, "fit", lambda frame, *a, **k: fitted.append(frame.shape) or real_fit(frame, *a, **k))
    with limits.applied(limits.Limits(max_video_frames=2)), \
            pytest.raises(InputError, match="too long.*at most 2 frames at 25 fps"):
        read_motion(files["grey50"], 25, SIZE, "stretch")  # 8 frames at 50 fps -> 4 at 25
    assert len(fitted) == 5  # the 6th source frame would make a 3rd output frame: stopped there


# ---------------------------------------------------------------------------------------------------- engine

def test_twenty_frames_end_to_end(session_engine: Engine, files: dict[str, Path]) -> None:
    calls = []
    unet = session_engine.pipeline("pose").unet
    hook = unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[2]))
    try:
        result = session_engine.run("pose", {"image": files["reference"], "motion": files["motion20"]},
                                    {"size": SIZE, "steps": 2, "seed": 5})
    finally:
        hook.remove()
    assert calls == [16] * 6  # 20 frames padded to 32: windows 0-15, 12-27, 24-31+0-7, for 2 steps
    video, grid = frames_of(result.files["video"]), frames_of(result.files["grid"])
    assert len(video) == len(grid) == 20 and video[0].shape == (SIZE, SIZE, 3)
    assert media.video_info(result.files["video"]).fps == pytest.approx(25)
    assert np.stack(video).std() > 5
    motion = frames_of(files["motion20"])
    reference = media.read_image(files["reference"])
    for i in (0, 19):  # reference (centre-cropped) | motion | result
        assert grid[i].shape == (SIZE, 3 * SIZE, 3)
        assert close(grid[i][:, :SIZE], fit_reference(reference, SIZE, "crop"))
        assert not close(grid[i][:, :SIZE], fit_reference(reference, SIZE, "stretch"), 3.0)
        assert close(grid[i][:, SIZE:2 * SIZE], motion[i])
        # the result panel is the result frame (both are lossy H.264 encodes of noise-like tiny-model frames)
        assert close(grid[i][:, 2 * SIZE:], video[i], 10.0) and not close(grid[i][:, 2 * SIZE:], motion[i], 10.0)
    settings = json.loads(result.files["settings"].read_text())
    assert settings["options"] | {"size": SIZE, "steps": 2, "seed": 5} == settings["options"]
    options = settings["options"]
    assert (options["fit"], options["grid"], options["guidance"], options["fps"]) == ("crop", True, 7.5, 25)
    assert {"sd15", "sd_vae_mse", "magicanimate"} <= set(settings["checkpoints"])  # and densepose when cached
    assert "densepose" not in result.files  # DensePose colours: used as they are, nothing extracted
    assert settings["details"] == {"motion_kind": "densepose"}
    assert {k: v["name"] for k, v in settings["inputs"].items()} == {"image": "reference.png", "motion": "motion20.mp4"}


def _empty_video(path: Path) -> Path:
    """An AVI whose video stream has no frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuvj420p"
        container.start_encoding()
    return path


@pytest.mark.parametrize("case, match", [
    ("not_a_video", "Could not open 'motion.mp4' as a video"), ("zero_frames", "'empty.avi' contains no frames"),
    ("unreadable_image", "Could not read 'reference.png' as an image"), ("huge_image", "'huge.png' is too large"),
    ("huge_size", "size must be at most 768"), ("odd_size", "multiple of 64"), ("overlap", "must be smaller than context"),
    ("no_motion", "Give a motion video"),
])
def test_bad_inputs_fail_before_loading_and_write_nothing(engine: Engine, files: dict[str, Path], tmp_path: Path,
                                                          case: str, match: str) -> None:
    inputs, options = {"image": files["reference"], "motion": files["motion4"]}, dict(TINY)
    if case == "not_a_video":
        inputs["motion"] = tmp_path / "motion.mp4"
        inputs["motion"].write_text("not a video")
    elif case == "zero_frames":
        inputs["motion"] = _empty_video(tmp_path / "empty.avi")
    elif case == "unreadable_image":
        inputs["image"] = tmp_path / "reference.png"
        inputs["image"].write_bytes(b"\x89PNG but not really")
    elif case == "huge_image":
        inputs["image"] = tmp_path / "huge.png"
        Image.new("L", (9000, 9000)).save(inputs["image"])
    elif case == "huge_size":
        options["size"] = 4096
    elif case == "odd_size":
        options["size"] = 100
    elif case == "overlap":
        options["overlap"] = 4
    else:
        del inputs["motion"]
    with pytest.raises(InputError, match=match):
        engine.run("pose", inputs, options)
    outputs = Path(engine.config.outputs)  # the run folder is made after validation: nothing may exist
    assert not outputs.exists() or not any(outputs.rglob("*"))


# ---------------------------------------------------------------------------------------------------- CLI and tab

def test_cli_resamples_fps_and_matches_the_engine(capsys: pytest.CaptureFixture, tiny_hub: Path,
                                                  session_engine: Engine, files: dict[str, Path],
                                                  tmp_path: Path) -> None:
    common = ["--cache-dir", str(tiny_hub), "--offline", "--device", "cpu"]
    flags = [f"--{k}={v}" for k, v in TINY.items()]
    out = tmp_path / "cli"
    assert main(["pose", "--image", str(files["reference"]), "--motion", str(files["densepose50"]), *flags,
                 "--fps", "25", "--no-grid", "--out", str(out), *common]) == 0
    cli = frames_of(out / "result.mp4")
    assert len(cli) == 4 and media.video_info(out / "result.mp4").fps == pytest.approx(25)  # 8 frames at 50 fps
    assert sorted(p.name for p in out.iterdir()) == ["result.mp4", "settings.json"]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["options"]["grid"] is False and settings["options"]["seed"] == 3
    same = session_engine.run("pose", {"image": files["reference"], "motion": files["densepose50"]},
                              {**TINY, "fps": 25, "grid": False})
    assert json.loads(same.files["settings"].read_text())["options"] == settings["options"]
    # Same pixels up to H.264 noise (write_mp4's threaded x264 is not bit-exact; another seed differs by ~30).
    assert close(np.stack(frames_of(same.files["video"])), np.stack(cli), 3.0)

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    capsys.readouterr()
    assert main(["pose", "--image", str(bad), "--motion", str(files["densepose50"]), "--out", str(tmp_path / "no"),
                 *common]) == 2
    assert "error: Could not read 'bad.png' as an image" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_tab_through_gradio_client(session_engine: Engine, files: dict[str, Path]) -> None:
    demo = build_app(session_engine)
    endpoints = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert endpoints["pose"].concurrency_limit is None  # the engine's device slot serialises jobs
    demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(session_engine.config.outputs)])
    try:
        client = Client(demo.local_url, verbose=False)
        inputs = {"image": handle_file(str(files["reference"])), "motion": handle_file(str(files["motion4"]))}
        options = {"size": SIZE, "steps": 1, "seed": 3, "fit": "pad", "context": 4, "overlap": 1}
        video, grid, extracted = client.predict(**inputs, **options, api_name="/pose")
        assert extracted is None  # a DensePose motion video is used as it is
        video, grid = (Path(v["video"] if isinstance(v, dict) else v) for v in (video, grid))
        assert len(frames_of(video)) == 4
        assert [f.shape for f in frames_of(grid)] == [(SIZE, 3 * SIZE, 3)] * 4
        preview = client.predict(image=handle_file(str(files["reference"])), fit="pad", size=SIZE,
                                 api_name="/pose_reference_preview")
        expected = fit_reference(media.read_image(files["reference"]), SIZE, "pad")
        np.testing.assert_array_equal(media.read_image(preview), expected)
        with pytest.raises(Exception, match=r"overlap \(4\) must be smaller than context \(4\)"):
            client.predict(**inputs, **{**options, "overlap": 4}, api_name="/pose")
    finally:
        demo.close()
