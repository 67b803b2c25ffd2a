"""Jobs: inputs validated before models load, atomic run folders, cancellation, settings.json, seeding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import InputError, JobCancelled
from tests.fake_tasks.echo.job import EVENTS
from engine.tasks import Input, Option, TaskSpec

ECHO = TaskSpec(
    name="echo", title="Echo", description="test task", checkpoints=(),
    inputs=(Input("text", "file", "a text file"),),
    options=(Option("mode", "choice", "ok", "behaviour", choices=("ok", "cancel", "crash")), Option.seed(-1)),
    package="tests.fake_tasks.echo")


@pytest.fixture
def echo_engine(engine: Engine, tmp_path: Path) -> tuple[Engine, Path]:
    engine.tasks["echo"] = ECHO
    text = tmp_path / "in.txt"
    text.write_text("hello")
    EVENTS.clear()
    return engine, text


def run_files(outputs: Path) -> list[Path]:
    return sorted(p for p in outputs.rglob("*") if p.is_file())


def test_successful_run_writes_result_and_settings(echo_engine) -> None:
    engine, text = echo_engine
    seen = []
    result = engine.run("echo", {"text": text}, {"seed": 7}, progress=lambda f, m: seen.append((f, m)))
    assert result.files["result"].read_text().startswith("HELLO")
    settings = json.loads(result.files["settings"].read_text())
    assert settings["options"] == {"mode": "ok", "seed": 7} and settings["inputs"]["text"]["name"] == "in.txt"
    assert settings["task"] == "echo" and "torch" in settings["versions"] and "run" in settings["timings_s"]
    assert settings["details"] == {"characters": 5}  # what the job recorded, numpy scalars as plain numbers
    assert result.folder.parent == Path(engine.config.outputs) / "echo"
    assert seen[-1] == (1.0, "Done") and ("step 1" in [m for _, m in seen])
    again = engine.run("echo", {"text": text}, {"seed": 7})
    assert again.files["result"].read_text() == result.files["result"].read_text()  # same seed, same output


def test_random_seed_is_recorded(echo_engine) -> None:
    engine, text = echo_engine
    settings = engine.run("echo", {"text": text}).settings
    assert 0 <= settings["options"]["seed"] < 2**32


def test_bad_input_fails_before_execution_and_writes_nothing(echo_engine, tmp_path: Path) -> None:
    engine, _ = echo_engine
    with pytest.raises(InputError, match="text file missing"):
        engine.run("echo", {"text": tmp_path / "nope.txt"})
    assert EVENTS == ["validate"] and run_files(Path(engine.config.outputs)) == []
    with pytest.raises(InputError, match="must be one of"):
        engine.run("echo", {"text": tmp_path / "nope.txt"}, {"mode": "fast"})
    with pytest.raises(InputError, match="Unknown option"):
        engine.run("echo", {"text": tmp_path / "nope.txt"}, {"colour": "red"})


@pytest.mark.parametrize("mode, error", [("cancel", JobCancelled), ("crash", RuntimeError)])
def test_failed_or_cancelled_run_leaves_no_files(echo_engine, mode: str, error: type) -> None:
    engine, text = echo_engine
    with pytest.raises(error):
        engine.run("echo", {"text": text}, {"mode": mode})
    assert run_files(Path(engine.config.outputs)) == []
    assert not any(Path(engine.config.outputs).rglob(".staging-*"))


def test_cancel_by_owner_reaches_the_running_job(echo_engine) -> None:
    engine, text = echo_engine
    cancelled = []

    def progress(fraction: float, message: str) -> None:
        if message == "step 1":
            cancelled.append(engine.cancel("session-1"))

    with pytest.raises(JobCancelled):
        engine.run("echo", {"text": text}, progress=progress, owner="session-1")
    assert cancelled == [True] and engine.cancel("session-1") is False


@pytest.mark.parametrize("existing", [False, True])
def test_out_dir_receives_files_atomically(echo_engine, tmp_path: Path, existing: bool) -> None:
    engine, text = echo_engine
    out = tmp_path / "cli-out"
    if existing:  # an empty folder is fine; a non-empty one is refused (see tests/test_outputs.py)
        out.mkdir()
    result = engine.run("echo", {"text": text}, out_dir=out)
    assert result.folder == out and (out / "result.txt").read_text().startswith("HELLO")
    assert sorted(p.name for p in out.iterdir()) == ["result.txt", "settings.json"]  # no staging marker left
    assert not list(out.parent.glob(".staging-*"))


def test_remaining_time_follows_the_pace_after_loading_and_restarts_with_a_new_phase() -> None:
    from engine.pipelines.base import RemainingTime

    now = [0.0]
    shown: list[tuple[float, str]] = []
    progress = RemainingTime(lambda f, m: shown.append((f, m)), clock=lambda: now[0])
    for t, fraction, message in [(0, 0.0, "Loading"), (100, 0.1, "Step 1"), (110, 0.2, "Step 2"),
                                 (150, 0.6, "Step 6"), (3000, 0.61, "Step 7"), (3100, 1.0, "Done"),
                                 (3101, 0.05, "Next phase")]:
        now[0] = t
        progress(fraction, message)
    assert [m for _, m in shown] == [
        "Loading", "Step 1",
        "Step 2 · about 80 s left",     # 10 s per tenth since step 1; the 100 s of loading do not count
        "Step 6 · about 40 s left",
        "Step 7 · about 37 min left",   # 2900 s for 0.51, 0.39 to go
        "Done", "Next phase"]


def test_inputs_are_checked_before_waiting_for_the_device_and_a_waiting_job_can_be_stopped(echo_engine,
                                                                                          tmp_path: Path) -> None:
    from engine import CancelToken, runtime

    engine, text = echo_engine
    shown: list[str] = []
    token = CancelToken()

    def progress(fraction: float, message: str) -> None:
        shown.append(message)
        if message.startswith("Waiting"):
            token.cancel()

    with runtime.device_lock(engine.device):  # another job has the device
        with pytest.raises(InputError, match="text file missing"):
            engine.run("echo", {"text": tmp_path / "nope.txt"})  # refused at once, without waiting
        with pytest.raises(JobCancelled):
            engine.run("echo", {"text": text}, progress=progress, cancel=token)
    assert shown == ["Waiting for the running job to finish"] and EVENTS == ["validate", "validate"]
    assert run_files(Path(engine.config.outputs)) == []


def test_stop_is_honoured_inside_a_network_call_and_the_checks_leave_with_the_context() -> None:
    import torch
    from torch import nn

    from engine import CancelToken
    from engine.jobs import cancellable

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down_blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
            self.mid_block = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.down_blocks:
                x = block(x)
            return self.mid_block(x)

    net, token, entered = Net(), CancelToken(), []

    def press_stop(*_: object) -> None:  # Stop arrives while the first block computes
        entered.append(0)
        token.cancel()

    net.down_blocks[0].register_forward_hook(press_stop)
    with cancellable(token, net), pytest.raises(JobCancelled):
        net(torch.zeros(1, 2))
    assert entered == [0]
    net(torch.zeros(1, 2))  # outside the context the same (cached) network runs unchecked
    assert entered == [0, 0]
    assert all(not block._forward_pre_hooks for block in (*net.down_blocks, net.mid_block))
