"""The cost model: work counted from options and input headers, CPU figures from the benchmarks, the pace of earlier runs
recorded in settings.json, and the CPU warning."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine import Engine, cost
from engine.examples import ASSETS
from engine.tasks import Input, Option, TaskSpec

DANCE_VIDEO = ASSETS / "pose" / "densepose_dance.mp4"  # 32 frames at 25 fps


def options(engine: Engine, task: str, **given):
    return engine.task(task).parse_options(given)


def test_pose_work_counts_windows_from_the_motion_video_at_the_fps_option(session_engine: Engine) -> None:
    one = cost.work("pose", {"motion": str(DANCE_VIDEO)}, options(session_engine, "pose", fps=25))
    assert one.counts == "25 steps × 3 windows, 32 frames at 512"  # 32 frames, windows of 16 every 12
    half = cost.work("pose", {"motion": str(DANCE_VIDEO)}, options(session_engine, "pose", fps=12))
    assert "1 window, 15 frames" in half.counts
    longer = cost.work("pose", {"motion": str(DANCE_VIDEO)}, options(session_engine, "pose", fps=25, steps=50))
    assert longer.seconds > 1.9 * one.seconds
    guessed = cost.work("pose", {}, options(session_engine, "pose"))
    assert "16 frames assumed" in guessed.note


def test_every_task_has_a_model_and_smaller_work_costs_less(session_engine: Engine) -> None:
    smaller = {"pose": {"size": 256}, "densepose": {"detect_size": 400}, "motion": {"size": 256},
               "face": {"size": 256}, "dance": {"working_size": 128}}
    for task in session_engine.tasks:
        full = cost.work(task, {}, options(session_engine, task))
        assert full is not None and full.memory_gib > 0, task
        if task in smaller:
            small = cost.work(task, {}, options(session_engine, task, **smaller[task]))
            assert small.seconds < full.seconds, task


def test_cpu_estimates_use_the_benchmarks_and_warn_at_full_size(session_engine: Engine) -> None:
    full = cost.estimate("pose", {}, options(session_engine, "pose"), "cpu", "fp32", [])
    bf16 = cost.estimate("pose", {}, options(session_engine, "pose"), "cpu", "bf16", [])
    assert full.seconds == pytest.approx(bf16.seconds * cost.FP32_TIME, rel=1e-9)
    assert full.memory_gib == pytest.approx(bf16.memory_gib * cost.FP32_MEMORY, rel=1e-9)
    assert "Full-size work on a CPU" in full.text() and "benchmark CPU" in full.basis
    small = cost.estimate("dance", {}, options(session_engine, "dance", working_size=128), "cpu", "fp32", [])
    assert not small.warning and small.text().startswith("**Estimate:** about")


def test_a_gpu_without_earlier_runs_gets_memory_but_no_time(session_engine: Engine) -> None:
    found = cost.estimate("motion", {}, options(session_engine, "motion"), "cuda", "bf16", [])
    assert found.seconds is None and found.memory_gib > 0 and not found.warning
    assert "time not measured yet" in found.text()


def test_the_pace_of_earlier_runs_on_the_same_device_refines_the_estimate(session_engine: Engine) -> None:
    chosen = options(session_engine, "dance")
    modelled = cost.work("dance", {}, chosen).seconds
    runs = [{"task": "dance", "device": "cuda:0", "estimate": {"model_s": 100.0}, "timings_s": {"run": 10.0}},
            {"task": "dance", "device": "cuda", "estimate": {"model_s": 100.0}, "timings_s": {"run": 30.0}},
            {"task": "dance", "device": "cpu", "estimate": {"model_s": 100.0}, "timings_s": {"run": 900.0}},
            {"task": "pose", "device": "cuda", "estimate": {"model_s": 100.0}, "timings_s": {"run": 900.0}},
            {"task": "dance", "device": "cuda", "estimate": None, "timings_s": {"run": 900.0}}]
    found = cost.estimate("dance", {}, chosen, "cuda", "fp16", runs)
    assert found.seconds == pytest.approx(modelled * 0.2, rel=1e-9)  # median of 0.1 and 0.3
    assert "2 earlier runs" in found.basis


ECHO = TaskSpec(name="echo", title="Echo", description="test task", checkpoints=(),
                inputs=(Input("text", "file", "a text file"),),
                options=(Option("mode", "choice", "ok", "behaviour", choices=("ok", "cancel", "crash")),
                         Option.seed(-1)),
                package="tests.fake_tasks.echo")


def test_each_run_records_its_modelled_cost_and_the_next_estimate_learns_from_it(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine.tasks["echo"] = ECHO
    monkeypatch.setitem(cost.MODELS, "echo", lambda inputs, o: cost.Work(1000.0, 1.0, "one echo", False, False))
    text = tmp_path / "in.txt"
    text.write_text("hello")
    assert "benchmark CPU" in engine.estimate("echo", {"text": str(text)}, {}).basis
    result = engine.run("echo", {"text": text}, {"seed": 1}, progress=lambda f, m: time.sleep(0.02))  # measurable
    settings = json.loads(result.files["settings"].read_text())
    assert settings["estimate"] == {"model_s": 1000.0, "counts": "one echo"}
    later = engine.estimate("echo", {"text": str(text)}, {})
    assert "1 earlier run here" in later.basis
    assert later.seconds == pytest.approx(settings["timings_s"]["run"], rel=1e-9)
