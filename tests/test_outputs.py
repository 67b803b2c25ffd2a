"""Nothing lost, nothing left: --out never overwrites, killed runs' staging folders are swept, SIGTERM discards like
Ctrl+C, per-instance Gradio temp folders, upload retention and an outputs quota, settings.json without server paths."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import app
from engine import Engine, EngineConfig
from engine.__main__ import cmd_task
from engine.errors import InputError, JobCancelled
from engine.jobs import stop_on_sigterm
from engine.outputs import STAGING_MARKER, prune_outputs, sweep_staging
from tests.fake_tasks.echo.job import EVENTS
from tests.test_jobs import ECHO, echo_engine, run_files  # noqa: F401  (echo_engine is a fixture)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- 1. --out
def test_non_empty_out_is_refused_before_any_work_and_left_as_it_was(echo_engine, tmp_path: Path) -> None:
    engine, text = echo_engine
    out = tmp_path / "mine"
    (out / "preview").mkdir(parents=True)
    (out / "preview" / "frame.png").write_bytes(b"keep me")
    (out / "settings.json").write_text('{"mine": true}')
    before = snapshot(out)
    with pytest.raises(InputError, match="not empty.*new"):
        engine.run("echo", {"text": text}, out_dir=out)
    assert EVENTS == [] and snapshot(out) == before and not list(tmp_path.glob(".staging-*"))


def test_out_pointing_at_a_file_is_refused_before_any_work(echo_engine, tmp_path: Path) -> None:
    engine, text = echo_engine
    out = tmp_path / "result.mp4"
    out.write_bytes(b"an older result")
    with pytest.raises(InputError, match="is a file"):
        engine.run("echo", {"text": text}, out_dir=out)
    assert EVENTS == [] and out.read_bytes() == b"an older result" and not list(tmp_path.glob(".staging-*"))


def test_a_file_that_appears_in_out_during_the_run_is_not_overwritten(echo_engine, tmp_path: Path) -> None:
    engine, text = echo_engine
    out = tmp_path / "out"

    def progress(fraction: float, message: str) -> None:
        if message == "step 1":
            out.mkdir()
            (out / "result.txt").write_text("mine")

    with pytest.raises(InputError, match="result.txt.*nothing was overwritten"):
        engine.run("echo", {"text": text}, progress=progress, out_dir=out)
    assert snapshot(out) == {"result.txt": b"mine"} and not list(tmp_path.glob(".staging-*"))


# ------------------------------------------------------------------------------------------- 2. staging sweep, SIGTERM
def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def staging(folder: Path, name: str, pid: int | None, host: str | None = None) -> Path:
    path = folder / f".staging-{name}"
    path.mkdir(parents=True)
    (path / "frame.png").write_bytes(b"x" * 100)
    if pid is not None:
        marker = {"pid": pid, "host": host or socket.gethostname(), "started": "2024-01-01T00:00:00"}
        (path / STAGING_MARKER).write_text(json.dumps(marker))
    return path


def test_engine_start_sweeps_only_marked_staging_folders_of_dead_processes(tiny_hub: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    dead = staging(outputs / "echo", "dead", dead_pid())
    unmarked = staging(outputs / "echo", "unmarked", None)
    ours = staging(outputs / "echo", "ours", os.getpid())
    alive = staging(outputs / "echo", "alive", os.getppid())
    elsewhere = staging(outputs / "echo", "other-host", dead_pid(), host="another-machine")
    Engine(EngineConfig(device="cpu", outputs=outputs, cache_dir=tiny_hub, offline=True), tasks={"echo": ECHO})
    assert not dead.exists() and unmarked.is_dir() and ours.is_dir() and alive.is_dir() and elsewhere.is_dir()


def test_cli_sweeps_beside_out(echo_engine, tmp_path: Path) -> None:
    engine, text = echo_engine
    dead = staging(tmp_path / "results", "killed", dead_pid())
    out = tmp_path / "results" / "new"
    cmd_task(engine, ECHO, SimpleNamespace(input_text=text, mode=None, seed=None, out=out))
    assert not dead.exists() and (out / "result.txt").is_file()


def test_sweep_ignores_a_missing_folder(tmp_path: Path) -> None:
    assert sweep_staging(tmp_path / "absent") == []


def test_every_staging_folder_carries_its_owner(echo_engine) -> None:
    engine, text = echo_engine
    markers = []

    def progress(fraction: float, message: str) -> None:
        if message == "step 1":
            markers.extend(json.loads(p.read_text()) for p in Path(engine.config.outputs).rglob(STAGING_MARKER))

    result = engine.run("echo", {"text": text}, progress=progress)
    assert [m["pid"] for m in markers] == [os.getpid()] and not (result.folder / STAGING_MARKER).exists()


def test_sigterm_discards_the_running_job_like_ctrl_c(echo_engine) -> None:
    engine, text = echo_engine
    previous = signal.getsignal(signal.SIGTERM)
    stop_on_sigterm()
    try:
        def progress(fraction: float, message: str) -> None:
            if message == "step 1":
                signal.raise_signal(signal.SIGTERM)

        with pytest.raises(KeyboardInterrupt):
            engine.run("echo", {"text": text}, progress=progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert run_files(Path(engine.config.outputs)) == []


# ------------------------------------------------------------------------------------------- 3. Gradio temp folder
def test_each_app_instance_gets_its_own_gradio_temp_folder() -> None:
    first, second = {}, {}
    folders = [app.instance_temp_dir(first), app.instance_temp_dir(second)]
    try:
        assert all(f is not None and f.is_dir() and f.name.startswith("animate-studio-") for f in folders)
        assert folders[0] != folders[1]
        assert [first["GRADIO_TEMP_DIR"], second["GRADIO_TEMP_DIR"]] == [str(f) for f in folders]
    finally:
        for folder in folders:
            folder.rmdir()
    chosen = {"GRADIO_TEMP_DIR": "/srv/gradio"}
    assert app.instance_temp_dir(chosen) is None and chosen == {"GRADIO_TEMP_DIR": "/srv/gradio"}


# ------------------------------------------------------------------------------------------- 4. retention and quota
def test_upload_retention_and_quota_flags(monkeypatch: pytest.MonkeyPatch, session_engine: Engine) -> None:
    monkeypatch.setenv("ANIMATE_UPLOAD_RETENTION_HOURS", "2")
    monkeypatch.setenv("ANIMATE_OUTPUTS_QUOTA_GB", "1.5")
    args = app.parse_args([])
    assert args.upload_retention_hours == 2 and app.delete_cache(args.upload_retention_hours) == (3600, 7200)
    assert app.config_from_args(args).outputs_quota_gb == 1.5
    assert app.delete_cache(0.01) == (36, 36)
    with pytest.raises(SystemExit):
        app.parse_args(["--upload-retention-hours", "0"])
    from tabs import build_app

    assert build_app(session_engine, delete_cache=(60, 120)).delete_cache == (60, 120)


def fake_run(outputs: Path, task: str, stamp: str, size: int) -> Path:
    run = outputs / task / f"{stamp}-{task}-abc123"
    run.mkdir(parents=True)
    (run / "settings.json").write_text("{}")
    (run / "video.mp4").write_bytes(b"v" * size)
    return run


def test_quota_prunes_the_oldest_finished_runs_only(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    oldest = fake_run(outputs, "pose", "20240101-000000", 1000)
    older = fake_run(outputs, "dance", "20240102-000000", 1000)
    newest = fake_run(outputs, "pose", "20240103-000000", 1000)
    running = staging(outputs / "pose", "20240104-000000-pose-abc123", os.getpid())
    notes = outputs / "pose" / "my-notes"
    notes.mkdir()
    (notes / "a.txt").write_bytes(b"n" * 5000)
    assert prune_outputs(outputs, 2200, keep=[newest]) == [oldest]
    assert older.is_dir() and newest.is_dir() and running.is_dir() and notes.is_dir()
    assert prune_outputs(outputs, 0, keep=[newest]) == [older] and newest.is_dir() and running.is_dir()


def test_engine_applies_the_quota_after_each_run(echo_engine, tiny_hub: Path) -> None:
    engine, text = echo_engine
    outputs = Path(engine.config.outputs)
    old = fake_run(outputs, "echo", "20200101-000000", 10_000)
    quota = Engine(EngineConfig(device="cpu", outputs=outputs, cache_dir=tiny_hub, offline=True, outputs_quota_gb=0),
                   tasks={"echo": ECHO})
    result = quota.run("echo", {"text": text})
    assert not old.exists() and result.files["result"].is_file()
    with pytest.raises(InputError, match="quota"):
        Engine(EngineConfig(outputs=outputs, cache_dir=tiny_hub, offline=True, outputs_quota_gb=-1), tasks={})


def test_the_quota_keeps_a_run_another_job_has_just_committed(echo_engine, tiny_hub: Path) -> None:
    """With several devices a job can prune while another job's run is committed but not yet handed back: the engine
    keeps such runs (noted before their commit) out of the pruning."""
    engine, text = echo_engine
    outputs = Path(engine.config.outputs)
    quota = Engine(EngineConfig(device="cpu", outputs=outputs, cache_dir=tiny_hub, offline=True, outputs_quota_gb=0),
                   tasks={"echo": ECHO})
    other = fake_run(outputs, "echo", "20200101-000000", 10_000)
    older = fake_run(outputs, "echo", "20190101-000000", 10_000)
    quota._fresh.add(other)  # noqa: SLF001 - what a concurrent run() holds between its commit and its return
    result = quota.run("echo", {"text": text})
    assert other.is_dir() and not older.exists() and result.folder.is_dir() and not quota._fresh - {other}


# ------------------------------------------------------------------------------------------- 5. settings.json inputs
def test_settings_record_upload_names_and_hashes_not_server_paths(echo_engine, tmp_path: Path) -> None:
    engine, _ = echo_engine
    upload = tmp_path / "gradio" / "0f3a9c" / "photo.txt"
    upload.parent.mkdir(parents=True)
    upload.write_text("hello")
    result = engine.run("echo", {"text": str(upload)})  # the UI passes str paths
    recorded = result.files["settings"].read_text()
    assert json.loads(recorded)["inputs"] == {
        "text": {"name": "photo.txt", "sha256": hashlib.sha256(b"hello").hexdigest()}}
    assert str(upload.parent) not in recorded and "0f3a9c" not in recorded


def test_stopping_the_server_cancels_running_jobs(echo_engine) -> None:
    engine, text = echo_engine
    counts = []

    def progress(fraction: float, message: str) -> None:
        if message == "step 1":
            counts.append(engine.cancel_all())

    with pytest.raises(JobCancelled):
        engine.run("echo", {"text": text}, progress=progress, owner="session-1")
    assert counts == [1] and engine.cancel_all() == 0 and run_files(Path(engine.config.outputs)) == []
    running = SimpleNamespace(cancel_all=iter([2, 1, 0, 5]).__next__)
    app.stop_running_jobs(running, wait_s=5)  # waits until none is left
    assert running.cancel_all() == 5
