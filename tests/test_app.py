"""The app: flags, the Blocks it builds (a tab per task in the tasks' order, API endpoints named by the task's inputs
and options, one GPU queue), and a live gradio_client round trip."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import SimpleNamespace
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client

import app
from engine import Engine, TaskSpec
from tabs import build_app
from tabs.dance import background_option

ROOT = Path(__file__).resolve().parent.parent


def test_app_help_documents_every_flag() -> None:
    done = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for flag in ("--host", "--port", "--share", "--auth", "--device", "--dtype", "--offload", "--outputs",
                 "--cache-dir", "--offline", "--max-file-size"):
        assert flag in done.stdout


def test_flags_read_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIMATE_PORT", "9999")
    monkeypatch.setenv("ANIMATE_DEVICE", "cpu")
    monkeypatch.setenv("ANIMATE_OFFLINE", "1")
    args = app.parse_args([])
    assert (args.port, args.device, args.offline, args.host) == (9999, "cpu", True, "127.0.0.1")
    with pytest.raises(SystemExit):
        app.parse_args(["--auth", "no-colon"])


@pytest.fixture(scope="module")
def live_app(session_engine: Engine):
    demo = build_app(session_engine)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(session_engine.config.outputs)])
    yield demo, Client(demo.local_url, verbose=False)
    demo.close()


def tab_ids(demo: gr.Blocks) -> list[str]:
    """The app's own tabs (those inside a tab, such as a tab's result views, left out)."""
    outer = next(block for block in demo.blocks.values() if isinstance(block, gr.Tabs))
    return [block.id for block in outer.children if isinstance(block, gr.Tab)]


def test_blocks_have_a_tab_per_task_in_spec_order_and_one_gpu_queue(session_engine: Engine) -> None:
    demo = build_app(session_engine)
    by_order = sorted(session_engine.tasks.values(), key=lambda spec: spec.order)
    with_tabs = [spec.name for spec in by_order if importlib.util.find_spec(f"tabs.{spec.name}") is not None]
    assert tab_ids(demo) == with_tabs + ["runs", "models"]
    assert {"pose", "motion", "dance"} <= set(with_tabs)
    endpoints = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert {*session_engine.tasks, "pose_reference_preview", "dance_cutout_preview", "download_checkpoints",
            "list_checkpoints"} <= set(endpoints)
    # handlers run side by side so that checking inputs never waits; the engine's device slot runs one job at a time
    assert all(endpoints[task].concurrency_limit is None for task in session_engine.tasks)


def test_tabs_follow_the_engines_tasks(session_engine: Engine) -> None:
    """Tabs are found by discovery: a task without a tabs/<task>.py module has no tab (and breaks nothing)."""
    tasks = session_engine.tasks
    headless = TaskSpec(name="headless", title="No tab", description="", checkpoints=(), inputs=(), options=())
    engine = Engine(session_engine.config, hub=session_engine.hub,
                    tasks={"dance": tasks["dance"], "headless": headless, "pose": tasks["pose"],
                           "densepose": tasks["densepose"]})  # the pose tab hosts the densepose endpoint
    assert tab_ids(build_app(engine)) == ["dance", "pose", "runs", "models"]


def test_run_endpoints_take_the_tasks_input_and_option_names(session_engine: Engine) -> None:
    """Required inputs, optional inputs (default None), then the options with the spec's defaults."""
    endpoints = build_app(session_engine).get_api_info()["named_endpoints"]
    for spec in session_engine.tasks.values():
        parameters = endpoints[f"/{spec.name}"]["parameters"]
        inputs = sorted(spec.inputs, key=lambda i: not i.required)
        assert [p["parameter_name"] for p in parameters] == [i.name for i in inputs] + [o.name for o in spec.options]
        defaults = {p["parameter_name"]: p["parameter_default"] for p in parameters if p["parameter_has_default"]}
        assert {o.name: defaults[o.name] for o in spec.options} == {o.name: o.default for o in spec.options}
        assert all(defaults[i.name] is None for i in spec.inputs if not i.required)
    assert [p["parameter_name"] for p in endpoints["/pose_reference_preview"]["parameters"]] == ["image", "fit", "size"]
    assert [p["parameter_name"] for p in endpoints["/dance_cutout_preview"]["parameters"]] == ["sheets"]


def test_background_controls_make_the_dance_background_option() -> None:
    assert [background_option(kind, "#ff8800") for kind in ("transparent", "colour", "image")] == [
        "transparent", "#ff8800", "image"]


def test_models_tab_lists_checkpoints_over_the_api(live_app, tiny_hub: Path) -> None:
    _, client = live_app
    table = client.predict(api_name="/list_checkpoints")
    rows = table["data"] if isinstance(table, dict) else table
    by_name = {row[1]: row for row in rows}
    assert by_name["conr"][2] == "nev/CoNR" and by_name["conr"][5] == "yes"
    assert str(tiny_hub) in by_name["conr"][6] and "weights/shader.pth" in by_name["conr"][7]
    assert by_name["anime_seg"][2] == "skytnt/anime-seg"


def test_download_button_reports_cached_paths(live_app) -> None:
    _, client = live_app
    _, sizes, status = client.predict(task="dance", api_name="/download_checkpoints")
    assert "`conr`" in status and "snapshots" in status and "**dance**" in sizes and "all cached" in sizes


def test_closing_the_tab_cancels_the_sessions_job(session_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = build_app(session_engine)
    unload = [fn for fn in demo.fns.values() if (None, "unload") in fn.targets]
    assert len(unload) == 1
    cancelled: list[str] = []
    monkeypatch.setattr(session_engine, "cancel", cancelled.append)
    unload[0].fn(SimpleNamespace(session_hash="leaving-user"))
    assert cancelled == ["leaving-user"]


def test_tabs_talk_to_the_engine_object_only() -> None:
    """Tabs import `engine` (the Engine and its public types, errors included) and other tabs, never a pipeline."""
    import ast

    for path in (ROOT / "tabs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            inside = [n for n in names if n == "engine" or n.startswith("engine.")]
            assert all(n in ("engine", "engine.errors") for n in inside), f"{path.name} imports {inside}"
