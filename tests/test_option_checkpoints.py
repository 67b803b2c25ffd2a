"""Checkpoints chosen by a run's options (say, the model a user picked), and another task's pipeline used inside a job
(say, DensePose extraction before pose animation)."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine import Engine, EngineConfig
from engine.tasks import Option, Options, TaskSpec, discover_tasks
from tests.fake_tasks.chooser.job import SEEN
from tests.fake_tasks.svd_probe.pipeline import ProbePipeline


def chosen_model(options: Options) -> tuple[str, ...]:
    return (options.model,)


CHOOSER = TaskSpec(name="chooser", title="Chooser", description="test task", checkpoints=("conr",),
                   optional_checkpoints=("anime_seg", "sd_vae_mse"), option_checkpoints=chosen_model, inputs=(),
                   options=(Option("model", "choice", "anime_seg", "which", choices=("anime_seg", "sd_vae_mse")),
                            Option("borrow", "str", "", "another task whose pipeline the job loads")),
                   package="tests.fake_tasks.chooser")
PROBE = TaskSpec(name="svd_probe", title="SVD probe", description="test task", checkpoints=("svd_xt_11",),
                 inputs=(), options=(), package="tests.fake_tasks.svd_probe")


@pytest.fixture()
def engine(tiny_hub: Path, tmp_path: Path) -> Engine:
    return Engine(EngineConfig(device="cpu", outputs=tmp_path, cache_dir=tiny_hub, offline=True),
                  tasks={**discover_tasks(), "chooser": CHOOSER, "svd_probe": PROBE})


def test_the_pipeline_gets_the_required_checkpoints_and_those_the_options_choose(engine: Engine) -> None:
    SEEN.clear()
    engine.run("chooser", {}, {"model": "sd_vae_mse"})
    engine.run("chooser", {}, {})
    assert [seen["own"] for seen in SEEN] == [["conr", "sd_vae_mse"], ["anime_seg", "conr"]]
    assert CHOOSER.run_checkpoints() == ("conr", "anime_seg")


def test_a_choice_outside_the_optional_checkpoints_is_a_programming_error() -> None:
    bad = TaskSpec(name="bad", title="Bad", description="", checkpoints=(), inputs=(), options=(),
                   option_checkpoints=lambda options: ("svd_xt_11",))
    with pytest.raises(ValueError, match="optional_checkpoints"):
        bad.run_checkpoints()


def test_a_job_can_use_another_tasks_pipeline_inside_its_device_slot(engine: Engine) -> None:
    SEEN.clear()
    engine.run("chooser", {}, {"borrow": "svd_probe"})
    assert isinstance(SEEN[0]["borrowed"], ProbePipeline)


def test_a_preview_builds_the_pipeline_for_its_options(engine: Engine) -> None:
    from engine.jobs import PreviewContext

    context = PreviewContext(engine, "chooser")
    with context.pipeline(context.options(model="sd_vae_mse")) as pipeline:
        assert sorted(pipeline.paths) == ["conr", "sd_vae_mse"]
