"""The tabs' shared behaviour, without a browser: bad uploads name the file and the fix, Stop reads "Stopping..." and a
cancelled run is information that leaves the outputs alone, one console line per user error, the cost box, the
trajectory canvas's cropped border, the dance background controls, and the start-up banner."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData

import app
from engine import Engine
from engine.examples import ASSETS
from engine.models.mofa import flows
from tabs import build_app, motion_drawing as draw
from tabs.dance import background_choices, swatch
from tabs.widgets import CANCELLED, STOPPING, PictureInput, estimate_text

SHEETS = [str(ASSETS / "dance" / "character_front.png")]


def run_handler(demo: gr.Blocks, task: str):
    return next(fn for fn in demo.fns.values() if fn.api_name == task)


def test_a_file_that_is_not_a_picture_is_refused_by_name_with_the_fix(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    picture = PictureInput(type="filepath")
    with pytest.raises(gr.Error, match=r"'notes.txt' is not a picture this app can read\. Use a PNG, JPEG or WebP"):
        picture.preprocess(FileData(path=str(notes), orig_name="notes.txt"))
    assert Path(picture.preprocess(FileData(path=SHEETS[0], orig_name="a.png"))).is_file()
    assert picture.get_block_name() == "image"  # the browser shows an ordinary Image
    assert not list(Path(__file__).parent.parent.glob("tabs/*.pyi"))  # Gradio wrote no stub for the subclass


def test_a_bad_input_through_the_tab_is_one_console_line_and_a_message(session_engine: Engine, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    notes = tmp_path / "sheet.txt"
    notes.write_text("not a picture")
    demo = build_app(session_engine)
    with caplog.at_level(logging.INFO, logger="tabs"), pytest.raises(gr.Error, match="sheet.txt") as raised:
        run_handler(demo, "dance").fn(sheets=[str(notes)], request=SimpleNamespace(session_hash="u1"),
                                      progress=lambda *a, **k: None)
    assert raised.value.print_exception is False  # Gradio prints no traceback for it
    lines = [r for r in caplog.records if r.name == "tabs"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "\n" not in lines[0].getMessage() and "sheet.txt" in lines[0].getMessage()


def test_stop_says_stopping_and_a_cancelled_run_is_information_that_keeps_the_outputs(
        session_engine: Engine, capsys: pytest.CaptureFixture) -> None:
    demo = build_app(session_engine)
    handler = run_handler(demo, "dance")
    stop = next(fn for fn in demo.fns.values() if fn.fn.__name__ == "stopping"
                and any(getattr(b, "elem_id", "") == "dance-stop" for b in fn.outputs))
    before = sorted((Path(session_engine.config.outputs) / "dance").glob("*"))
    request = SimpleNamespace(session_hash="user-2")
    said = []

    def progress(fraction: float, desc: str = "") -> None:
        if not said:
            said.append(stop.fn(request))  # the user presses Stop while the job runs
        said.append(desc)

    result = handler.fn(sheets=SHEETS, request=request, progress=progress)
    assert said[0]["value"] == STOPPING and said[0]["interactive"] is False
    assert STOPPING in said[1:]  # the progress says so; the time-left estimate is gone
    assert all(isinstance(r, dict) and r.get("__type__") == "update" and len(r) == 1 for r in result)  # gr.skip()
    assert CANCELLED in capsys.readouterr().out  # gr.Info (outside an event it prints)
    assert sorted((Path(session_engine.config.outputs) / "dance").glob("*")) == before
    assert stop.fn(request) == gr.skip()  # nothing running: the button stays as it is


def test_the_cost_box_reports_bad_options_instead_of_an_estimate(session_engine: Engine) -> None:
    assert estimate_text(session_engine, "dance", {}, {"working_size": 256}).startswith("**Estimate:** about")
    assert estimate_text(session_engine, "pose", {}, {"steps": 0}) == "⚠️ Option steps must be at least 1; got 0."


@pytest.mark.parametrize("width, height, size", [(384, 256, 512), (1000, 700, 512), (700, 1000, 320), (97, 61, 64)])
def test_the_shaded_border_is_exactly_what_the_task_crops_away(width: int, height: int, size: int) -> None:
    image = np.full((height, width, 3), 200, np.uint8)
    prepared, (scale, left, top) = flows.prepare_image(image, size)
    x0, y0, x1, y1 = draw.kept_area(width, height, size)
    expected = (left / scale, top / scale, (left + prepared.shape[1]) / scale, (top + prepared.shape[0]) / scale)
    assert np.allclose((x0, y0, x1, y1), expected, rtol=1e-12)
    drawing = draw.start(image, size)
    shaded = draw.render_overlay(drawing)
    kept = (shaded == 200).all(-1)
    ys, xs = np.nonzero(kept)
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    assert (shaded[~kept] < 200).all()


def test_clicks_in_the_cropped_border_add_no_point() -> None:
    drawing = draw.start(np.zeros((256, 512, 3), np.uint8), 256)  # 512x256 -> crop 512x256: all kept
    assert draw.add_point(drawing, 5, 5).trajectories == [[[5, 5]]]
    narrow = draw.with_size(draw.start(np.zeros((300, 200, 3), np.uint8)), 64)  # 64x96: keeps y 0..288 of 300
    assert draw.add_point(narrow, 100, 295).trajectories == []
    assert draw.add_point(narrow, 100, 150).trajectories == [[[100, 150]]]
    assert draw.clear(narrow).short_side == 64


def test_dance_background_says_what_mp4_makes_of_transparency() -> None:
    assert background_choices("mp4")[0] == ("black (mp4 has no transparency)", "transparent")
    assert background_choices("webm")[0] == ("transparent", "transparent")
    assert "black" in swatch("mp4", "transparent", "#123456") and "#123456" in swatch("mp4", "colour", "#123456")
    assert "transparent" in swatch("png", "transparent", "#000000")


def test_the_start_banner_names_the_apps_own_share_flag(capsys: pytest.CaptureFixture) -> None:
    app.announce("http://127.0.0.1:7860/", None, share=False)
    out = capsys.readouterr().out
    assert "http://127.0.0.1:7860/" in out and "--share" in out and "share=True" not in out


def test_each_run_shows_its_progress_once_on_the_main_result_and_results_under_tabs_open_on_it(
        session_engine: Engine) -> None:
    """A desktop layout: progress on the result only (not on every output); where the results sit under tabs, the
    tab holding the main result is the one shown."""
    demo = build_app(session_engine)
    blocks = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    for task in ("pose", "motion", "dance", "face", "fourd", "densepose"):
        fn = run_handler(demo, task)
        assert fn.show_progress_on == [blocks[f"{task}-result"]], task
    orbit_tabs = blocks["fourd-result"].parent.parent
    assert isinstance(orbit_tabs, gr.Tabs) and orbit_tabs.selected == blocks["fourd-result"].parent.id == "orbit"


def test_a_seed_is_a_bounded_number_field_and_a_short_range_a_slider() -> None:
    from engine.tasks import Option
    from tabs.widgets import option_control

    with gr.Blocks():
        seed = option_control(Option.seed(42))
        steps = option_control(Option("steps", "int", 25, "denoising steps", minimum=1, maximum=100))
    assert isinstance(seed, gr.Number) and (seed.minimum, seed.maximum, seed.value) == (-1, 2**32 - 1, 42)
    assert isinstance(steps, gr.Slider)
