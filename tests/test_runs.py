"""History: earlier runs listed from the outputs folder (settings.json), and "use these settings again" filling the
run's tab."""
from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr
import pytest

from engine import Engine
from engine.tasks import Input, Option, TaskSpec
from tabs import build_app, runs

ECHO = TaskSpec(name="echo", title="Echo", description="test task", checkpoints=(),
                inputs=(Input("text", "file", "a text file"),),
                options=(Option("mode", "choice", "ok", "behaviour", choices=("ok", "cancel", "crash")),
                         Option.seed(-1)),
                package="tests.fake_tasks.echo")


@pytest.fixture
def echo_runs(engine: Engine, tmp_path: Path) -> Engine:
    engine.tasks["echo"] = ECHO
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    engine.run("echo", {"text": text}, {"seed": 5})
    time.sleep(0.02)  # past the file system's timestamp granularity: the second run finishes visibly later
    engine.run("echo", {"text": text}, {"seed": 6, "mode": "ok"})
    with pytest.raises(Exception):
        engine.run("echo", {"text": text}, {"mode": "crash"})  # a failed run leaves no folder, so no history
    (Path(engine.config.outputs) / "echo" / "not-a-run").mkdir()
    return engine


def test_history_lists_finished_runs_newest_first_with_their_settings(echo_runs: Engine) -> None:
    found = echo_runs.history()
    assert [r["options"]["seed"] for r in found] == [6, 5]
    assert all((Path(r["folder"]) / "settings.json").is_file() for r in found)
    assert echo_runs.history("pose") == [] and len(echo_runs.history("echo", limit=1)) == 1
    table = runs.rows(echo_runs, found)
    assert table[0][1] == "echo" and table[0][2] == "text: notes.txt" and table[0][3] == "seed 6"
    assert table[0][4] == "result.txt" and table[0][6] == Path(found[0]["folder"]).name
    assert runs.result_files(found[0])[0].endswith("settings.json")
    assert '"seed": 6' in runs.details(found[0])


def test_use_these_settings_again_fills_only_that_tasks_controls() -> None:
    with gr.Blocks():
        seed, steps, other, trajectories = gr.Number(), gr.Slider(1, 50), gr.Number(), gr.Code()
    controls = {"motion": {"seed": seed, "steps": steps, "trajectories": trajectories}, "pose": {"seed": other}}
    run = {"task": "motion", "options": {"seed": 42, "steps": 9, "unknown": 1},
           "inputs": {"image": {"name": "a.png", "sha256": "0"}, "trajectories": [[[1, 2], [3, 4]]]}}
    assert runs.refill(run, controls) == {seed: 42, steps: 9, trajectories: "[[[1, 2], [3, 4]]]"}


def test_the_runs_tab_switches_to_the_task_with_its_settings(session_engine: Engine,
                                                            capsys: pytest.CaptureFixture) -> None:
    outputs = Path(session_engine.config.outputs)
    folder = outputs / "dance" / "20260101-120000-dance-abcdef"
    folder.mkdir(parents=True)
    settings = {"task": "dance", "created": "2026-01-01T12:00:00", "options": {"fps": 12, "format": "webm"},
                "inputs": {"sheets": [{"name": "a.png", "sha256": "0"}]}, "outputs": {}, "timings_s": {"run": 3.0}}
    (folder / "settings.json").write_text(json.dumps(settings))
    try:
        demo = build_app(session_engine)
        reuse = next(fn for fn in demo.fns.values() if fn.fn.__name__ == "use_again")
        updates = reuse.fn(folder.name)
        assert "dance tab has this run's settings" in capsys.readouterr().out  # gr.Info outside an event prints
        by_label = {getattr(c, "label", None): v for c, v in updates.items() if not isinstance(c, gr.Tabs)}
        assert by_label["Fps"] == 12 and by_label["Format"] == "webm"
        tabs = next(v for c, v in updates.items() if isinstance(c, gr.Tabs))
        assert tabs.selected == "dance"
        assert {c._id for c in updates} <= {c._id for c in reuse.outputs}
        with pytest.raises(gr.Error, match="Pick a run"):
            reuse.fn("no-such-run")
    finally:
        (folder / "settings.json").unlink()
        folder.rmdir()
