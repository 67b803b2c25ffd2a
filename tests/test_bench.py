"""The benchmark harness: one report for every task, settings checked against the task's, timers that add up."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from engine import Engine, EngineConfig
from engine import bench
from engine.errors import InputError
from engine.tasks import discover_tasks
from engine.testing.weights import randomise

TASKS = discover_tasks()
QUICK = {"pose": {"frames": 1, "steps": 1}, "motion": {"frames": 2, "steps": 1}, "dance": {"sheets": 1, "frames": 1},
         "face": {"frames": 2, "steps": 1}, "fourd": {"steps": 1, "windows": 1},
         "densepose": {"frames": 1}}
REPORT_KEYS = {"task", "size", "device", "dtype", "offload", "threads", "settings", "timings_s", "peak_memory_gib",
               "peak_memory_kind", "results"}


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_reports_the_common_schema(task: str) -> None:
    report = Engine(EngineConfig(device="cpu")).bench(task, device="cpu", size="tiny", **QUICK.get(task, {}))
    assert set(report) == REPORT_KEYS
    assert (report["task"], report["size"], report["device"], report["dtype"]) == (task, "tiny", "cpu", "fp32")
    assert report["offload"] == "none" and report["threads"] == torch.get_num_threads()
    assert report["settings"] == {**TASKS[task].module("bench").SETTINGS, **QUICK.get(task, {})}
    assert report["timings_s"] and all(seconds > 0 for seconds in report["timings_s"].values())
    assert report["peak_memory_gib"] > 0 and report["peak_memory_kind"] == "process max RSS"
    assert report["results"] and all(isinstance(v, (int, float, str)) for v in report["results"].values())
    json.dumps(report)


@pytest.mark.parametrize("settings, match", [
    ({"steps": 3}, "The dance benchmark has no --steps setting"),
    ({"frames": 1.5}, "--frames must be int"),
])
def test_a_setting_the_task_lacks_or_of_the_wrong_type_is_an_input_error(settings: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        bench.run(TASKS["dance"], device="cpu", size="tiny", **settings)


def test_an_unknown_size_is_an_input_error() -> None:
    with pytest.raises(InputError, match="full or tiny"):
        bench.run(TASKS["dance"], device="cpu", size="huge")


def test_the_timer_adds_up_every_block_under_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.0, 10.0, 12.5, 20.0, 20.25])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    harness = bench.Harness(torch.device("cpu"), torch.float32)
    for name in ("step", "step", "decode"):
        with harness.timer(name):
            pass
    assert harness.timings == {"step": 3.5, "decode": 0.25}


def test_harness_networks_are_random_cast_and_frozen() -> None:
    harness = bench.Harness(torch.device("cpu"), torch.bfloat16)
    net = harness.network(lambda: nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)))
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in net.parameters()) and not net.training
    assert net[1].bias.abs().min() > 0 and not torch.equal(net[1].weight, torch.ones_like(net[1].weight))


def test_randomise_fills_zero_and_constant_tensors_repeatably() -> None:
    def build() -> nn.Module:
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.PReLU(8))
        nn.init.zeros_(net[0].weight)
        return randomise(net, torch.Generator().manual_seed(7))

    net = build()
    for tensor in (net[0].weight, net[0].bias, net[1].weight, net[1].bias, net[1].running_mean, net[2].weight):
        assert tensor.abs().min() > 0 and tensor.unique().numel() > 1
    assert net[1].running_var.min() >= 0.5 and net[1].num_batches_tracked == 0
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), build().state_dict().values()))
