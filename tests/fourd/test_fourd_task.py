"""Video to 4D end to end through the engine, the CLI (with --model-config) and the Gradio API, on the tiny
stabilityai/sv4d2.0 cache: one video per new view with the input's 21 frames at the working size, the grid, the orbit,
the frames zip; bad inputs fail before any model loads."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine import Engine, JobResult, media
from engine.__main__ import main
from engine.errors import InputError
from engine.pipelines.fourd import job
from engine.pipelines.fourd.background import BackgroundRemover
from engine.pipelines.fourd.frames import read_clip
from engine.pipelines.fourd.spec import SPEC
from tests.fourd.conftest import object_frames, write_gif, write_zip

SIZE = 64
FAST = {"size": SIZE, "steps": 1, "encode_chunk": 16, "decode_chunk": 16}  # tiny runs: one step is enough
NEW_VIEWS = {"sv4d2": 4, "sv4d2_8views": 8}


def frames_of(path: Path) -> list[np.ndarray]:
    return list(media.iter_video(path))


def check_views(files: dict[str, Path], model: str) -> None:
    views = sorted(name for name in files if name.startswith("view_"))
    assert views == [f"view_{v:02d}" for v in range(1, NEW_VIEWS[model] + 1)]
    for name in views + ["processed_input", "orbit"]:
        frames = frames_of(files[name])
        assert len(frames) == 21 and frames[0].shape == (SIZE, SIZE, 3), name
        assert media.video_info(files[name]).fps == pytest.approx(10)
    grid = frames_of(files["grid"])
    assert len(grid) == 21 and grid[0].shape == ((SIZE, 5 * SIZE) if model == "sv4d2" else (3 * SIZE, 3 * SIZE)) + (3,)
    with zipfile.ZipFile(files["frames"]) as archive:
        assert len(archive.namelist()) == (NEW_VIEWS[model] + 1) * 21
    cameras = json.loads(files["cameras"].read_text())
    assert [c["view"] for c in cameras] == ["view_00"] + views and cameras[0]["azimuth_deg"] == 0


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A GIF on white, and an mp4 on a dark background (the tiny U2-Net keeps bright pixels, so removal shows)."""
    folder = tmp_path_factory.mktemp("fourd_clips")
    media.write_mp4(folder / "dark.mp4", iter(object_frames(21, background=20)), 10)
    return {"gif": write_gif(folder / "object.gif", object_frames(25)), "dark": folder / "dark.mp4"}


@pytest.fixture(scope="module")
def runs(session_engine: Engine, clips: dict[str, Path]) -> dict[str, JobResult]:
    """One tiny run per model (the tiny networks still take a while on a CPU): the 4-view model on the dark video with
    background removal through the cached U2-Net, the 8-view model on the GIF without."""
    return {"sv4d2": session_engine.run("fourd", {"video": clips["dark"]}, {**FAST, "start_frame": 0}),
            "sv4d2_8views": session_engine.run("fourd", {"video": clips["gif"]},
                                               {**FAST, "model": "sv4d2_8views", "remove_bg": False})}


@pytest.mark.parametrize("model", ["sv4d2", "sv4d2_8views"])
def test_both_models_end_to_end(runs: dict[str, JobResult], model: str) -> None:
    result = runs[model]
    check_views(result.files, model)
    settings = json.loads(result.files["settings"].read_text())
    assert settings["options"]["model"] == model and model in settings["checkpoints"]
    assert settings["inputs"]["video"]["name"] == ("dark.mp4" if model == "sv4d2" else "object.gif")
    processed = frames_of(result.files["processed_input"])
    assert processed[0][0, 0].min() > 240  # framed on white (the dark background removed in the sv4d2 run)


def test_the_cli_with_a_model_config(session_engine: Engine, clips: dict[str, Path], tmp_path: Path) -> None:
    config = session_engine.hub.status("sv4d2").path / "sv4d2.yaml"
    out = tmp_path / "result"
    args = ["fourd", "--video", str(clips["gif"]), "--model", "sv4d2", "--model-config", str(config),
            "--no-remove-bg", "--size", str(SIZE), "--steps", "1", "--out", str(out),
            "--cache-dir", str(session_engine.config.cache_dir), "--offline", "--device", "cpu"]
    assert main(args) == 0
    files = {p.stem: p for p in out.iterdir()}
    check_views(files, "sv4d2")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["inputs"]["model_config"]["name"] == "sv4d2.yaml"
    assert main([*args[:-7], "--size", "600", "--out", str(tmp_path / "bad"), *args[-5:]]) == 2


def test_the_tab_and_its_viewer(session_engine: Engine, clips: dict[str, Path]) -> None:
    """The default model goes through the tab in the contract test; here the 8-view model, and the viewer."""
    from gradio_client import Client, handle_file

    from tabs import build_app
    from tabs.fourd import frame_at

    demo = build_app(session_engine)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(session_engine.config.outputs)])
    try:
        client = Client(demo.local_url, verbose=False)
        orbit, _grid, views, _processed, download, *_ = client.predict(
            video=handle_file(str(clips["gif"])), model="sv4d2_8views", remove_bg=False, **FAST, api_name="/fourd")
        orbit = orbit["video"] if isinstance(orbit, dict) else orbit
        assert len(views) == 8 and len(frames_of(Path(orbit))) == 21
        frames_zip = next(Path(d) for d in download if str(d).endswith("frames.zip"))
        frame = frame_at(frames_zip, 8, 20)
        assert frame is not None and frame.shape == (SIZE, SIZE, 3)
        assert frame_at(frames_zip, 9, 0) is None
        sheet = client.predict(video=handle_file(str(clips["gif"])), mask=None, remove_bg=False, start_frame=-1,
                               size=SIZE, api_name="/fourd_input_preview")
        assert Path(sheet).is_file()
    finally:
        demo.close()


def test_the_input_preview_is_a_contact_sheet_of_the_processed_frames(session_engine: Engine,
                                                                      clips: dict[str, Path]) -> None:
    preview = session_engine.preview("fourd", "input", video=clips["dark"], size=SIZE)
    assert not preview.note and preview.value.shape == (3 * job.PREVIEW_TILE, 7 * job.PREVIEW_TILE, 3)
    assert preview.value[0, 0].min() > 240


def bad(tmp_path: Path, kind: str) -> dict[str, Path]:
    if kind == "one frame":
        return {"video": write_zip(tmp_path / "one.zip", object_frames(1))}
    if kind == "unreadable":
        (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
        return {"video": tmp_path / "clip.mp4"}
    if kind == "gif with alpha":
        return {"video": write_gif(tmp_path / "alpha.gif", object_frames(4), transparency=0)}
    if kind == "empty mask":
        media.write_png(tmp_path / "mask.png", np.zeros((72, 96, 3), np.uint8))
        return {"video": write_zip(tmp_path / "clip.zip", object_frames(4)), "mask": tmp_path / "mask.png"}
    if kind == "all white":
        return {"video": write_zip(tmp_path / "white.zip", [np.full((8, 8, 3), 255, np.uint8)] * 3)}
    (tmp_path / "config.yaml").write_text("model: [not, a, config")
    return {"video": write_zip(tmp_path / "clip.zip", object_frames(4)), "model_config": tmp_path / "config.yaml"}


@pytest.mark.parametrize("kind, message", [
    ("one frame", "at least 2 frames"), ("unreadable", "Could not open"), ("gif with alpha", "transparent pixels"),
    ("empty mask", "is empty"), ("all white", "every frame is white"), ("bad config", "could not be read as YAML")])
def test_bad_inputs_fail_in_validation(tmp_path: Path, kind: str, message: str) -> None:
    options = SPEC.parse_options({"remove_bg": kind != "all white"})
    with pytest.raises(InputError, match=message):
        job.validate(bad(tmp_path, kind), options)


def test_size_must_be_a_multiple_of_64(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="multiple of 64"):
        job.validate({"video": write_zip(tmp_path / "c.zip", object_frames(3))}, SPEC.parse_options({"size": 600}))


def test_no_object_left_after_removal_fails_and_writes_nothing(engine: Engine, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BackgroundRemover, "__call__", lambda self, frame: np.zeros((*frame.shape[:2], 4), np.uint8))
    video = tmp_path / "clip.mp4"
    media.write_mp4(video, iter(object_frames(21)), 10)
    with pytest.raises(InputError, match="Background removal left no object"):
        engine.run("fourd", {"video": video}, FAST)
    assert not any((Path(engine.config.outputs) / "fourd").glob("*"))


def test_masks_replace_background_removal(tmp_path: Path) -> None:
    frames = object_frames(21)
    mask = np.zeros((72, 96, 3), np.uint8)
    mask[20:50, 10:60] = 255
    media.write_png(tmp_path / "mask.png", mask)
    options = SPEC.parse_options({"size": SIZE})
    prepared = job.validate({"video": write_zip(tmp_path / "clip.zip", frames), "mask": tmp_path / "mask.png"},
                            options)
    processed = job.prepare(prepared["clip"], prepared["masks"], options, model=None)
    assert processed.shape == (21, SIZE, SIZE, 3)
    clip = read_clip(tmp_path / "clip.zip")
    assert clip.indices == prepared["clip"].indices
