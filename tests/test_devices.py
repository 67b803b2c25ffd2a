"""Several devices in one engine (--devices): one job per device slot at a time, each slot with its own network cache
and budget, waiting jobs in line with their place shown, failures and Stop confined to their own job.

Two CPU "devices" (cpu,cpu) stand in for two GPUs. Overlap is proven with events (both jobs inside their slots at
once, neither finished), never with timings.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Hashable

import numpy as np
import pytest
import torch

from engine import Engine, EngineConfig, media, runtime
from engine.errors import InputError, JobCancelled
from engine.tasks import Option, TaskSpec, discover_tasks
from tests.fake_tasks.gate.job import GATES, INSIDE, NETWORKS
from tests.tolerance import assert_relative_close

GATE = TaskSpec(name="gate", title="Gate", description="test task", checkpoints=(), inputs=(),
                options=(Option("name", "str", "a", "job name"), Option("crash", "bool", False, "fail at the end")),
                package="tests.fake_tasks.gate")
WAIT_S = 30  # only reached when the scheduler is broken


class Job:
    """One engine.run in its own thread, with the progress messages it showed and its result or error."""

    def __init__(self, engine: Engine, name: str, crash: bool = False, owner: Hashable = None) -> None:
        GATES[name], INSIDE[name] = threading.Event(), threading.Event()
        self.name, self.messages = name, []
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(engine, {"name": name, "crash": crash}, owner))
        self.thread.start()

    def _run(self, engine: Engine, options: dict, owner: Hashable) -> None:
        try:
            self.result = engine.run("gate", {}, options, progress=lambda f, m: self.messages.append(m), owner=owner)
        except BaseException as exc:  # noqa: BLE001 (the test inspects it)
            self.error = exc

    @property
    def inside(self) -> bool:
        return INSIDE[self.name].is_set()

    def wait_inside(self) -> None:
        assert INSIDE[self.name].wait(WAIT_S), f"{self.name} never got a device slot"

    def wait_for_message(self, text: str) -> None:
        for _ in range(WAIT_S * 20):
            if text in self.messages:
                return
            threading.Event().wait(0.05)
        raise AssertionError(f"{self.name} never showed {text!r}; it showed {self.messages}")

    def finish(self) -> "Job":
        GATES[self.name].set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), f"{self.name} did not finish"
        return self


@pytest.fixture
def two_cpus(tmp_path: Path) -> Engine:
    NETWORKS.clear()
    return Engine(EngineConfig(devices=("cpu", "cpu"), outputs=tmp_path / "outputs", offline=True,
                               cache_dir=tmp_path / "hub"), tasks={"gate": GATE})


def test_device_names_are_checked_when_the_engine_starts(tmp_path: Path) -> None:
    assert runtime.choose_device(" CPU ").type == "cpu"
    with pytest.raises(InputError, match="Unknown device 'gpu0'"):
        runtime.choose_device("gpu0")
    missing = f"cuda:{torch.cuda.device_count() + 3}"
    with pytest.raises(InputError, match=missing):
        runtime.choose_device(missing)
    with pytest.raises(InputError, match=missing):
        Engine(EngineConfig(devices=("cpu", missing), outputs=tmp_path), tasks={})


def test_the_app_stops_at_once_on_a_missing_device(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    import app

    missing = f"cuda:{torch.cuda.device_count() + 3}"
    with pytest.raises(SystemExit) as stopped:
        app.main(["--devices", f"cpu,{missing}", "--outputs", str(tmp_path)])
    assert stopped.value.code == 2 and missing in capsys.readouterr().err


def test_two_jobs_run_at_once_and_the_next_ones_wait_in_line(two_cpus: Engine) -> None:
    first, second = Job(two_cpus, "first"), Job(two_cpus, "second")
    first.wait_inside()
    second.wait_inside()  # both hold a slot at once, neither has finished
    third = Job(two_cpus, "third")
    third.wait_for_message("Waiting for a free device")
    fourth = Job(two_cpus, "fourth")
    fourth.wait_for_message("Waiting for a free device: 1 job ahead")
    assert not third.inside and not fourth.inside
    first.finish()
    third.wait_inside()  # first come, first served
    fourth.wait_for_message("Waiting for a free device")  # now next in line
    assert not fourth.inside
    second.finish()
    fourth.wait_inside()
    jobs = [first, second, third.finish(), fourth.finish()]
    assert [job.error for job in jobs] == [None] * 4
    assert [job.result.files["name"].read_text() for job in jobs] == ["first", "second", "third", "fourth"]
    assert {job.result.settings["device"] for job in jobs} == {"cpu"}
    # each slot loads into its own cache: the two running at once got two copies; the third reused the first's
    slots = two_cpus.slots.slots
    assert NETWORKS["first"] is not NETWORKS["second"] and NETWORKS["third"] is NETWORKS["first"]
    assert NETWORKS["fourth"] is NETWORKS["second"]
    assert [len(slot.models.keys()) for slot in slots] == [1, 1] and slots[0].models is not slots[1].models
    assert two_cpus.models is slots[0].models and two_cpus.device == slots[0].device


def test_a_failure_on_one_device_does_not_stop_the_other(two_cpus: Engine) -> None:
    failing, running = Job(two_cpus, "failing", crash=True), Job(two_cpus, "running")
    failing.wait_inside()
    running.wait_inside()
    failing.finish()
    assert isinstance(failing.error, RuntimeError) and running.thread.is_alive()
    after = Job(two_cpus, "after")  # the failed job gave its slot back
    after.wait_inside()
    assert running.finish().error is None and after.finish().error is None


def test_stop_reaches_only_its_owners_job_also_while_waiting(two_cpus: Engine) -> None:
    alice, bob = Job(two_cpus, "alice", owner="alice"), Job(two_cpus, "bob", owner="bob")
    alice.wait_inside()
    bob.wait_inside()
    carol = Job(two_cpus, "carol", owner="carol")
    carol.wait_for_message("Waiting for a free device")
    dave = Job(two_cpus, "dave", owner="dave")
    dave.wait_for_message("Waiting for a free device: 1 job ahead")
    assert two_cpus.cancel("carol")
    carol.thread.join(WAIT_S)
    assert isinstance(carol.error, JobCancelled)
    dave.wait_for_message("Waiting for a free device")  # carol left the line
    assert two_cpus.cancel("alice")
    alice.thread.join(WAIT_S)
    assert isinstance(alice.error, JobCancelled)
    dave.wait_inside()
    assert bob.finish().error is None and dave.finish().error is None
    assert len(list((Path(two_cpus.config.outputs) / "gate").iterdir())) == 2  # bob's and dave's runs only


def test_a_preview_takes_a_free_slot_and_never_waits(two_cpus: Engine) -> None:
    device, networks = two_cpus.preview("gate", "slot").value
    assert device == "cpu" and networks is two_cpus.slots.slots[0].models
    busy = Job(two_cpus, "busy")
    busy.wait_inside()
    device, networks = two_cpus.preview("gate", "slot").value  # the other slot is free
    assert networks is two_cpus.slots.slots[1].models
    other = Job(two_cpus, "other")
    other.wait_inside()
    shown = two_cpus.preview("gate", "slot")
    assert shown.value is None and "A job is running" in shown.note
    busy.finish()
    other.finish()


def test_each_slot_has_its_own_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    class Memory:
        available = 10 * 2**30

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory)
    config = {"outputs": tmp_path, "cache_dir": tmp_path / "hub", "offline": True}
    one = Engine(EngineConfig(device="cpu", **config), tasks={})
    two = Engine(EngineConfig(devices=("cpu", "cpu"), **config), tasks={})
    given = Engine(EngineConfig(devices=("cpu", "cpu"), memory_budget_gb=1.5, **config), tasks={})
    assert one.models.budget == 6 * 2**30  # 60% of free RAM
    assert [slot.models.budget for slot in two.slots.slots] == [3 * 2**30] * 2  # shared by the CPU slots
    assert [slot.models.budget for slot in given.slots.slots] == [int(1.5 * 2**30)] * 2  # per device


def test_real_runs_side_by_side_give_the_single_device_result(tiny_hub: Path, tmp_path: Path) -> None:
    engine = Engine(EngineConfig(devices=("cpu", "cpu"), outputs=tmp_path / "outputs", cache_dir=tiny_hub,
                                 offline=True), tasks=discover_tasks())
    sheets = sorted(next(tiny_hub.glob("spaces--nev--CoNR/snapshots/*")).glob("character_sheet_ponytail_example/*.png"))
    options = {"working_size": 128, "format": "png", "frame_end": 2}
    both_loading = threading.Barrier(2, timeout=WAIT_S)  # breaks unless both jobs load in their slots at once
    results: list[Any] = [None, None]

    def run(i: int) -> None:
        def progress(fraction: float, message: str) -> None:
            if message.startswith("Loading"):
                both_loading.wait()

        results[i] = engine.run("dance", {"sheets": sheets[:2]}, options, progress=progress)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 4)
    assert all(results), "a run failed (see the thread's exception above)"
    alone = Engine(EngineConfig(device="cpu", outputs=tmp_path / "alone", cache_dir=tiny_hub, offline=True))
    expected = media.read_image(alone.run("dance", {"sheets": sheets[:2]}, options).files["frames"] / "000001.png")
    for result in results:
        assert_relative_close(media.read_image(result.files["frames"] / "000001.png").astype(np.float64),
                              expected.astype(np.float64))
    first, second = (set(slot.models.keys()) for slot in engine.slots.slots)
    assert first and first == second  # each device loaded its own copy of the same networks
