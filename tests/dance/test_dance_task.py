"""Character dance end to end through the engine, the CLI and the Gradio API, on the tiny nev/CoNR cache."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from engine import Engine, media
from engine.__main__ import main
from engine.errors import InputError
from engine.pipelines.dance.tiny import TINY_POSE_FRAMES, TINY_POSE_SIZE
from tabs import build_app

POSE_H, POSE_W = TINY_POSE_SIZE


@pytest.fixture(scope="module")
def sheets(tiny_hub: Path) -> list[Path]:
    folder = next(tiny_hub.glob("spaces--nev--CoNR/snapshots/*")) / "character_sheet_ponytail_example"
    return sorted(folder.glob("*.png"))[:2]


FAST = {"working_size": 128}  # the tiny networks do not need the production 256


def frames_of(path: Path) -> list[np.ndarray]:
    return media.read_video(path)[0]


def test_mp4_with_the_example_motion(session_engine: Engine, sheets: list[Path]) -> None:
    result = session_engine.run("dance", {"sheets": sheets}, {"background": "#00ff00"})
    frames = frames_of(result.files["video"])
    assert len(frames) == TINY_POSE_FRAMES and frames[0].shape == (POSE_H, POSE_W, 3)
    assert media.video_info(result.files["video"]).fps == pytest.approx(30)
    assert frames[0][0, 0, 1] > 200 and frames[0][0, 0, 0] < 60  # far corner is background green
    settings = json.loads(result.files["settings"].read_text())
    assert settings["checkpoints"]["conr"]["commit"] == "8abc56d553e3f87636edafee957266ebf272ab41"
    assert [s["name"] for s in settings["inputs"]["sheets"]] == [p.name for p in sheets]
    assert 1 <= len(list(result.files["preview"].glob("*.png"))) <= 12


def test_png_frames_are_rgba_with_the_range_and_fit_size(session_engine: Engine, sheets: list[Path]) -> None:
    result = session_engine.run("dance", {"sheets": sheets}, {
        **FAST, "format": "png", "frame_start": 2, "frame_end": 7, "output_size": "fit", "width": 80, "height": 64})
    pngs = sorted(result.files["frames"].glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(5)]
    first = media.read_image(pngs[0])
    assert first.shape == (64, 80, 4) and first[..., 3].min() < 255  # transparency survives
    with zipfile.ZipFile(result.files["archive"]) as archive:
        assert len(archive.namelist()) == 5


def test_webm_keeps_transparency(session_engine: Engine, sheets: list[Path]) -> None:
    result = session_engine.run("dance", {"sheets": sheets}, {**FAST, "format": "webm", "frame_end": 3})
    assert result.files["video"].suffix == ".webm" and len(frames_of(result.files["video"])) == 3


def test_deterministic(session_engine: Engine, sheets: list[Path]) -> None:
    runs = [session_engine.run("dance", {"sheets": sheets}, {**FAST, "format": "png", "frame_end": 2}) for _ in range(2)]
    a, b = (media.read_image(r.files["frames"] / "000001.png") for r in runs)
    assert np.array_equal(a, b)


def test_sheets_without_transparency_are_cut_out(session_engine: Engine, sheets: list[Path], tmp_path: Path) -> None:
    rgba = media.read_image(sheets[0]).astype(np.float32) / 255
    premultiplied = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)
    flat = media.write_png(tmp_path / "flat.jpg", media.composite(premultiplied, None))  # on black, no alpha
    result = session_engine.run("dance", {"sheets": [flat]}, {**FAST, "frame_end": 2})
    cut = media.read_image(result.files["cutouts"] / "00.png")
    assert cut.shape[-1] == 4 and 0 < cut[..., 3].mean() < 250
    with pytest.raises(InputError, match="no transparent area"):
        session_engine.run("dance", {"sheets": [flat]}, {"cutout": False})


def test_parser_mode_from_a_dance_video(session_engine: Engine, sheets: list[Path], tmp_path: Path) -> None:
    video = tmp_path / "dance.mp4"
    rng = np.random.default_rng(0)
    media.write_mp4(video, [rng.integers(0, 255, (POSE_H, POSE_W, 3), dtype=np.uint8) for _ in range(4)], fps=10)
    result = session_engine.run("dance", {"sheets": sheets, "poses": video}, {**FAST, "format": "png"})
    assert len(list(result.files["frames"].glob("*.png"))) == 4
    assert not (result.folder / "video_frames").exists()


def _udp_zip(path: Path, frames: dict[str, np.ndarray | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, frame in frames.items():
            if isinstance(frame, bytes):
                archive.writestr(name, frame)
            else:
                with archive.open(name, "w") as handle:
                    np.savez(handle, i=frame)
    return path


@pytest.mark.parametrize("case, match", [
    ("empty_alpha", "'empty.png' .*transparent"), ("nine_sheets", "1 to 8"), ("mask_size", "sizes must match"),
    ("bad_npz", "bad.npz"), ("three_channels", "4"), ("no_frames", "no .npz"), ("range", "selects no frame"),
    ("background", "#RRGGBB"),
])
def test_bad_inputs_are_named(session_engine: Engine, sheets: list[Path], tmp_path: Path, case: str,
                              match: str) -> None:
    inputs, options = {"sheets": sheets}, {}
    good = np.zeros((32, 32, 4), np.float32)
    if case == "empty_alpha":
        empty = tmp_path / "empty.png"
        media.write_png(empty, np.zeros((40, 40, 4), np.uint8))
        inputs["sheets"] = [empty]
    elif case == "nine_sheets":
        inputs["sheets"] = sheets[:1] * 9
    elif case == "mask_size":
        media.write_png(tmp_path / "mask.png", np.zeros((5, 5, 3), np.uint8))
        inputs["masks"] = [tmp_path / "mask.png"] * len(sheets)
    elif case == "bad_npz":
        inputs["poses"] = _udp_zip(tmp_path / "p.zip", {"0.npz": good, "bad.npz": b"not a numpy file"})
    elif case == "three_channels":
        inputs["poses"] = _udp_zip(tmp_path / "p.zip", {"0.npz": np.zeros((32, 32, 3), np.float32)})
    elif case == "no_frames":
        inputs["poses"] = _udp_zip(tmp_path / "p.zip", {"readme.txt": b"hello"})
    elif case == "range":
        options = {"frame_start": 50}
    elif case == "background":
        options = {"background": "green"}
    with pytest.raises(InputError, match=match):
        session_engine.run("dance", inputs, options)
    assert not list(Path(session_engine.config.outputs).rglob(".staging-*"))


def test_cli_writes_mp4_and_png_frames(capsys, tiny_hub: Path, sheets: list[Path], tmp_path: Path) -> None:
    common = ["--cache-dir", str(tiny_hub), "--offline", "--device", "cpu", "--frame-end", "3", "--working-size", "128"]
    args = [a for s in sheets for a in ("--sheet", str(s))]
    assert main(["dance", *args, "--out", str(tmp_path / "mp4"), *common]) == 0
    assert len(frames_of(tmp_path / "mp4" / "result.mp4")) == 3
    settings = json.loads((tmp_path / "mp4" / "settings.json").read_text())
    assert settings["options"]["frame_end"] == 3 and settings["options"]["fps"] == 30
    assert main(["dance", *args, "--out", str(tmp_path / "png"), "--format", "png", *common]) == 0
    assert media.read_image(tmp_path / "png" / "frames" / "000002.png").shape == (POSE_H, POSE_W, 4)


def test_tab_through_gradio_client(session_engine: Engine, sheets: list[Path]) -> None:
    demo = build_app(session_engine)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(session_engine.config.outputs)])
    try:
        client = Client(demo.local_url, verbose=False)
        video, download, gallery = client.predict(
            sheets=[handle_file(str(s)) for s in sheets], background="#ff0000", fps=12, frame_end=4, working_size=128,
            api_name="/dance")
        path = Path(video["video"] if isinstance(video, dict) else video)
        assert len(frames_of(path)) == 4 and media.video_info(path).fps == pytest.approx(12)
        assert len(gallery) == 4 and download
        cut = client.predict(sheets=[handle_file(str(s)) for s in sheets], api_name="/dance_cutout_preview")
        assert len(cut) == len(sheets)
    finally:
        demo.close()
