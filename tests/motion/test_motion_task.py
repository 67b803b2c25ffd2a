"""Trajectories (MOFA-Video) end to end through the engine, the CLI and the Gradio API on the tiny Hub cache, plus the
tab's drawing handlers and live motion-field preview."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from engine import Engine, EngineConfig, media, runtime
from engine.__main__ import main
from engine.errors import InputError
from tabs import build_app
from tabs import motion_drawing as draw

SIZE = 64  # the tiny models work at 64x64 (the real ones at 512)
TRACKS = [[[10, 12], [30, 20], [44, 40]], [[50, 50], [46, 30]]]
OPTIONS = {"frames": 4, "steps": 2, "size": SIZE, "fps": 10, "seed": 3}
CLI_OPTIONS = ["--frames", "4", "--steps", "2", "--size", str(SIZE), "--fps", "10", "--seed", "3"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("motion_inputs")
    rng = np.random.default_rng(0)
    brush = np.zeros((SIZE, SIZE), np.uint8)
    brush[:32, :32] = 255
    paths = {"image": folder / "picture.png", "brush": folder / "brush.png", "traj": folder / "traj.json",
             "wide": folder / "wide.png", "empty_brush": folder / "empty.png", "small_brush": folder / "small.png",
             "text": folder / "notes.png"}
    media.write_png(paths["image"], rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    media.write_png(paths["wide"], rng.integers(0, 255, (SIZE, 80, 3), dtype=np.uint8))
    media.write_png(paths["brush"], brush)
    media.write_png(paths["empty_brush"], np.zeros((SIZE, SIZE), np.uint8))
    media.write_png(paths["small_brush"], np.full((8, 8), 255, np.uint8))
    paths["traj"].write_text(json.dumps(TRACKS))
    paths["text"].write_text("not a picture")
    return paths


@pytest.fixture(scope="module")
def result(session_engine: Engine, files: dict[str, Path]):
    inputs = {"image": files["image"], "trajectories": TRACKS, "brush": files["brush"]}
    return session_engine.run("motion", inputs, OPTIONS)


def frames_of(path: Path) -> list[np.ndarray]:
    return media.read_video(path)[0]


def test_run_writes_result_flow_hint_and_repeatable_settings(result) -> None:
    video, flow = frames_of(result.files["video"]), frames_of(result.files["flow"])
    assert len(video) == 4 and video[0].shape == (SIZE, SIZE, 3)
    assert media.video_info(result.files["video"]).fps == pytest.approx(10)
    assert len(flow) == 4 and flow[0].min() > 240  # frame 0 has no motion: white
    assert flow[-1].min() < 200  # the drag shows up in the last frame's flow colours
    hint = media.read_image(result.files["hint"])
    assert hint.shape == (SIZE, SIZE, 3) and (hint[..., 0].astype(int) - hint[..., 2] > 100).any()  # red paths
    settings = json.loads(result.files["settings"].read_text())
    assert settings["inputs"]["trajectories"] == TRACKS and settings["inputs"]["image"]["name"] == "picture.png"
    assert {k: settings["options"][k] for k in OPTIONS} == OPTIONS and settings["options"]["scale"] == 0.6
    assert set(settings["checkpoints"]) == {"svd_xt_11", "mofa_traj"}
    assert json.loads(result.files["trajectories"].read_text()) == TRACKS
    assert (media.read_image(result.files["brush"])[:32, :32] == 255).all()


def test_cli_repeats_the_run_from_its_folder(capsys, tiny_hub: Path, result, files: dict[str, Path],
                                             tmp_path: Path) -> None:
    out = tmp_path / "again"
    args = ["motion", "--image", str(files["image"]), "--trajectories", str(result.files["trajectories"]),
            "--brush", str(result.files["brush"]), *CLI_OPTIONS, "--out", str(out),
            "--cache-dir", str(tiny_hub), "--offline", "--device", "cpu"]
    assert main(args) == 0
    assert "result.mp4" in capsys.readouterr().out
    again, first = frames_of(out / "result.mp4"), frames_of(result.files["video"])
    assert len(again) == 4 and all(np.array_equal(a, b) for a, b in zip(again, first))  # same seed, same video
    assert len(frames_of(out / "flow.mp4")) == 4
    settings = json.loads((out / "settings.json").read_text())
    assert settings["inputs"]["trajectories"] == TRACKS and settings["options"]["frames"] == 4
    assert json.loads((out / "trajectories.json").read_text()) == TRACKS


@pytest.mark.parametrize("case, match", [
    ("bad_json", "not valid JSON"), ("single_point", "single point"), ("empty_list", "No trajectory"),
    ("outside", "outside"), ("cropped_border", "cropped away"), ("not_numbers", "number pairs"),
    ("empty_brush", "empty"), ("brush_size", "same picture"), ("not_an_image", "as an image"),
    ("no_image", "No picture"), ("size", "multiple of 64"),
])
def test_bad_inputs_fail_before_anything_is_written(session_engine: Engine, files: dict[str, Path], tmp_path: Path,
                                                    case: str, match: str) -> None:
    inputs, options = {"image": files["image"], "trajectories": TRACKS}, dict(OPTIONS)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[[[1, 2], [3, 4]]")
    inputs.update({
        "bad_json": {"trajectories": bad_json}, "single_point": {"trajectories": [[[10, 10]]]},
        "empty_list": {"trajectories": []}, "outside": {"trajectories": [[[10, 10], [70, 10]]]},
        "cropped_border": {"image": files["wide"], "trajectories": [[[3, 10], [30, 10]]]},
        "not_numbers": {"trajectories": [[["a", 1], [2, 3]]]}, "empty_brush": {"brush": files["empty_brush"]},
        "brush_size": {"brush": files["small_brush"]}, "not_an_image": {"image": files["text"]},
        "no_image": {"image": None},
    }.get(case, {}))
    if case == "size":
        options["size"] = 100
    before = set(Path(session_engine.config.outputs).rglob("*"))
    with pytest.raises(InputError, match=match):
        session_engine.run("motion", inputs, options)
    assert set(Path(session_engine.config.outputs).rglob("*")) == before


def test_cli_bad_trajectories_exit_2_and_write_nothing(capsys, tiny_hub: Path, files: dict[str, Path],
                                                       tmp_path: Path) -> None:
    single = tmp_path / "single.json"
    single.write_text("[[[10, 10]]]")
    out = tmp_path / "out"
    code = main(["motion", "--image", str(files["image"]), "--trajectories", str(single), *CLI_OPTIONS,
                 "--out", str(out), "--cache-dir", str(tiny_hub), "--offline", "--device", "cpu"])
    assert code == 2 and "single point" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------------------------------------------- drawing

def test_drawing_state_transitions() -> None:
    d = draw.start(np.zeros((40, 60, 3), np.uint8))
    d = draw.add_point(draw.add_point(d, 5, 6), 20, 8)
    d = draw.new_trajectory(d)
    assert draw.new_trajectory(d) == d  # no second empty trajectory
    d = draw.add_point(d, 100, -5)  # clamped into the picture
    assert d.trajectories == [[[5, 6], [20, 8]], [[59, 0]]]
    assert json.loads(draw.trajectories_json(d)) == d.trajectories
    assert draw.undo(d).trajectories == [[[5, 6], [20, 8]]]
    assert draw.undo(draw.undo(d)).trajectories == [[[5, 6]]]
    assert draw.undo(draw.new_trajectory(draw.undo(d))).trajectories == [[[5, 6]]]  # skips the empty one
    assert draw.delete_last(d).trajectories == [[[5, 6], [20, 8]]]
    assert draw.delete_last(draw.delete_last(d)).trajectories == [] and draw.undo(draw.start(d.image)).tracks == ()
    brushed = draw.stamp_brush(d, 30, 20, 5)
    assert brushed.brush[20, 30] == 255 and brushed.brush[20, 36] == 0 and brushed.brush.sum() // 255 > 60
    cleared = draw.clear(brushed)
    assert cleared.trajectories == [] and cleared.brush is None and cleared.image is d.image
    assert draw.clear_brush(brushed).brush is None and draw.clear_brush(brushed).tracks == brushed.tracks
    assert draw.load_trajectories(d, [[[1.4, 2.6], [3, 4]]]).trajectories == [[[1, 3], [3, 4]]]
    assert draw.add_point(draw.Drawing(), 1, 1) == draw.Drawing()  # no picture yet: clicks do nothing


def test_overlay_draws_paths_arrows_and_brush() -> None:
    image = np.full((64, 96, 3), 128, np.uint8)
    d = draw.add_point(draw.add_point(draw.add_point(draw.start(image), 10, 32), 40, 32), 80, 32)
    overlay = draw.render_overlay(d)
    red = (overlay[..., 0] > 200) & (overlay[..., 1] < 100)
    assert red[32, 25] and red[32, 60] and not red[10, 50]  # along the path, not elsewhere
    assert red[26:32, 70:80].any() and red[33:39, 70:80].any()  # arrow head flanks the last segment
    assert (image == 128).all()  # the picture itself is untouched
    painted = draw.render_overlay(draw.stamp_brush(draw.start(image), 48, 10, 4))
    assert painted[10, 48, 2] > 160 and painted[10, 48, 0] < 110 and (painted[50, 10] == 128).all()
    assert draw.render_overlay(draw.Drawing()) is None


# ---------------------------------------------------------------------------------------------------- preview

def test_live_preview_runs_cmp_only(session_engine: Engine, tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)

    def preview(engine: Engine, trajectories: list) -> tuple[np.ndarray | None, str]:
        shown = engine.preview("motion", "motion_field", image=image, trajectories=trajectories, brush=None, size=SIZE)
        return shown.value, shown.note

    flow, why = preview(session_engine, [[[20, 20], [40, 24]], [[5, 5]]])
    assert why == "" and flow.shape == (SIZE, SIZE, 3) and flow.min() < 200
    unfinished, why = preview(session_engine, [[[20, 20]]])  # nothing to show yet
    assert unfinished is None and "at least two points" in why
    with pytest.raises(InputError, match="outside"):
        preview(session_engine, [[[20, 20], [90, 20]]])
    with runtime.device_lock(session_engine.device):
        busy, why = preview(session_engine, [[[20, 20], [40, 24]]])
    assert busy is None and "job is running" in why
    empty = Engine(EngineConfig(device="cpu", outputs=tmp_path, cache_dir=tmp_path / "empty", offline=True))
    absent, why = preview(empty, [[[20, 20], [40, 24]]])
    assert absent is None and "downloaded" in why


# ---------------------------------------------------------------------------------------------------- tab

def test_tab_through_gradio_client(session_engine: Engine, files: dict[str, Path]) -> None:
    demo = build_app(session_engine)
    endpoints = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert endpoints["motion"].concurrency_limit is None  # the engine's device slot serialises jobs
    demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(session_engine.config.outputs)])
    try:
        client = Client(demo.local_url, verbose=False)
        video, flow, hint, extras = client.predict(
            image=handle_file(str(files["image"])), trajectories=json.dumps(TRACKS),
            brush=handle_file(str(files["brush"])), **OPTIONS, api_name="/motion")
        paths = [Path(v["video"] if isinstance(v, dict) else v) for v in (video, flow)]
        assert [len(frames_of(p)) for p in paths] == [4, 4]
        assert media.read_image(hint).shape == (SIZE, SIZE, 3)
        settings = json.loads(Path(next(e for e in extras if e.endswith("settings.json"))).read_text())
        assert settings["inputs"]["trajectories"] == TRACKS and settings["options"]["seed"] == 3
        with pytest.raises(Exception, match="not valid JSON"):
            client.predict(image=handle_file(str(files["image"])), trajectories="[[1,", **OPTIONS, api_name="/motion")
    finally:
        demo.close()
