"""One-click examples: every task has one offline, made of the project's own files, valid for the task (its inputs pass
the task's own checks); published demo inputs appear once their checkpoint is cached and are absent otherwise."""
from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import pytest

from engine import Engine, EngineConfig
from engine.examples import ASSETS
from engine.hub import load_specs
from engine.limits import applied
from engine.testing import snapshot_folder
from tabs import build_app


def files(value) -> list[Path]:
    values = value if isinstance(value, list) else [value]
    return [Path(v) for v in values if isinstance(v, str) and not v.lstrip().startswith("[")]


@pytest.mark.parametrize("task", ["pose", "motion", "dance", "face", "fourd"])
def test_every_tab_task_has_an_offline_example_that_passes_the_tasks_checks(session_engine: Engine, task: str) -> None:
    spec = session_engine.task(task)
    own = [e for e in session_engine.examples(task) if all(ASSETS in f.parents for v in e.inputs.values()
                                                          for f in files(v))]
    assert own, f"{task} has no example of the project's own"
    for example in own:
        assert set(example.inputs) <= {i.name for i in spec.inputs}
        assert all(f.is_file() for v in example.inputs.values() for f in files(v))
        parsed = spec.parse_options(example.options)
        with applied(session_engine.config.limits):
            spec.job.validate(dict(example.inputs), parsed)  # raises InputError if an asset does not fit the task


def test_assets_stay_small_and_carry_their_notice() -> None:
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 400_000
    notice = (ASSETS / "NOTICE.md").read_text()
    assert all(p.name in notice for p in ASSETS.rglob("*") if p.suffix in (".png", ".mp4", ".npy", ".wav", ".json"))


def test_published_demo_sheets_appear_once_cached_and_are_absent_otherwise(session_engine: Engine,
                                                                          tmp_path: Path) -> None:
    cached = [e for e in session_engine.examples("dance") if "CoNR" in e.label]
    assert len(cached) == 1 and all(Path(p).is_file() for p in cached[0].inputs["sheets"])
    empty = Engine(EngineConfig(device="cpu", outputs=tmp_path / "out", cache_dir=tmp_path / "hub", offline=True))
    assert [e.label for e in empty.examples("dance")] == [e.label for e in session_engine.examples("dance")
                                                          if e.label != cached[0].label]


def test_examples_in_the_app_are_never_run_or_cached_at_launch(session_engine: Engine) -> None:
    demo = build_app(session_engine)
    found = {b.elem_id: b for b in demo.blocks.values() if isinstance(b, gr.Dataset)}
    for task in ("pose", "motion", "dance"):
        assert f"{task}-examples" in found, task
    examples = [fn for fn in demo.fns.values() if fn.name == "load_example"]
    assert examples and all(fn.api_visibility == "private" for fn in examples)


def place_magicanimate_examples(cache_dir: Path) -> Path:
    """MagicAnimate's published demo inputs in the Space's layout in a Hub cache (project files stand in for them)."""
    spec = load_specs()["magicanimate_examples"]
    folder = snapshot_folder(cache_dir, spec)
    for name in spec.files:
        stand_in = ASSETS / "pose" / ("densepose_dance.mp4" if name.endswith(".mp4") else "person.png")
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(stand_in, folder / name)
    return folder


def test_published_pose_examples_appear_once_cached_and_pass_the_tasks_checks(tiny_hub: Path, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    shutil.copytree(tiny_hub, hub)
    engine = Engine(EngineConfig(device="cpu", outputs=tmp_path / "out", cache_dir=hub, offline=True))
    before = engine.examples("pose")
    assert not [e for e in before if "MagicAnimate" in e.label]
    folder = place_magicanimate_examples(hub)
    published = [e for e in engine.examples("pose") if "MagicAnimate" in e.label]
    assert [e.inputs["image"] for e in published] == [str(folder / "inputs/applications/source_image" / name)
                                                      for name in ("monalisa.png", "demo4.png", "dalle2.jpeg")]
    spec = engine.task("pose")
    for example in published:
        with applied(engine.config.limits):
            spec.job.validate(dict(example.inputs), spec.parse_options(example.options))
    (folder / "inputs/applications/driving/densepose/demo4.mp4").unlink()  # a partial snapshot is not cached
    assert [e.label for e in engine.examples("pose")] == [e.label for e in before]


def test_get_the_published_examples_fetches_them_on_purpose_then_lists_them(tiny_hub: Path, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    shutil.copytree(tiny_hub, hub)
    offline = Engine(EngineConfig(device="cpu", outputs=tmp_path / "out", cache_dir=hub, offline=True))
    assert "pose-get-examples" not in elem_ids(build_app(offline))  # offline: nothing to offer
    engine = Engine(EngineConfig(device="cpu", outputs=tmp_path / "out", cache_dir=hub, offline=False))
    fetched = []

    def checkpoint(name: str, progress=None, task=None) -> Path:
        fetched.append(name)
        return place_magicanimate_examples(hub)

    engine.checkpoint = checkpoint  # what a download would leave in the cache
    demo = build_app(engine)
    button = elem_ids(demo)["pose-get-examples"]
    assert "MB" in button.value and not fetched  # its size shown, nothing fetched when the app was built
    handler = next(fn for fn in demo.fns.values() if (button._id, "click") in fn.targets)
    listed, hidden = handler.fn()
    assert fetched == ["magicanimate_examples"] and hidden["visible"] is False
    labels = listed.sample_labels
    assert labels[0] == "Drawn person, procedural DensePose dance" and sum("MagicAnimate" in x for x in labels) == 3
    opened = next(fn for fn in demo.fns.values() if fn.fn.__name__ == "listed")  # a page opened afterwards
    listed_then, button_then = opened.fn()
    assert listed_then.sample_labels == labels and button_then["visible"] is False
    assert "pose-get-examples" not in elem_ids(build_app(engine))  # cached at launch: no button


def elem_ids(demo: gr.Blocks) -> dict[str, gr.components.Component]:
    return {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
