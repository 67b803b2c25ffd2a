"""The app: flags, the Blocks it builds (tabs, API endpoints, one GPU queue), and a live gradio_client round trip."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from pathlib import Path

import pytest
from gradio_client import Client

import app
from engine import Engine
from tabs import build_app

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


def test_blocks_have_tabs_endpoints_and_a_single_gpu_queue(session_engine: Engine) -> None:
    demo = build_app(session_engine)
    endpoints = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert {"dance", "dance_cutout_preview", "download_checkpoints", "list_checkpoints"} <= set(endpoints)
    assert endpoints["dance"].concurrency_id == "gpu"
    config = demo.get_config_file()
    labels = {c.get("props", {}).get("label") for c in config["components"]}
    assert {"Character dance", "Models"} <= labels


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
    _, sizes, status = client.predict("dance", api_name="/download_checkpoints")
    assert "`conr`" in status and "snapshots" in status and "**dance**" in sizes and "all cached" in sizes


def test_closing_the_tab_cancels_the_sessions_job(session_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = build_app(session_engine)
    unload = [fn for fn in demo.fns.values() if (None, "unload") in fn.targets]
    assert len(unload) == 1
    cancelled: list[str] = []
    monkeypatch.setattr(session_engine, "cancel", cancelled.append)
    unload[0].fn(SimpleNamespace(session_hash="leaving-user"))
    assert cancelled == ["leaving-user"]
