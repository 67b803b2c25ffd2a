"""The task contract, checked for every discovered task: its roles exist, a tiny run goes end to end through
Engine.run, a cancelled run writes nothing, bad input fails before any model loads, and model offload stages every
network and gives the same files."""
from __future__ import annotations

import contextlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, EngineConfig
from engine.errors import AnimateError, InputError, JobCancelled
from engine.pipelines.base import Pipeline
from engine.tasks import ROLES, discover_tasks
from tests.offload_check import checking_stages

TASKS = discover_tasks()


def engine_for(hub: Path, outputs: Path, offload: str = "none") -> Engine:
    return Engine(EngineConfig(device="cpu", outputs=outputs, cache_dir=hub, offline=True, offload=offload))


def tiny(task: str, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    return TASKS[task].module("tiny").tiny_inputs(folder)


def files_in(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "settings.json"}


@pytest.mark.parametrize("task", TASKS)
def test_roles_are_where_the_convention_says(task: str) -> None:
    spec = TASKS[task]
    assert [spec.module(role).__name__ for role in ROLES] == [f"engine.pipelines.{task}.{role}" for role in ROLES]
    assert spec.module("spec").SPEC is spec
    assert callable(spec.job.validate) and callable(spec.job.execute)
    assert issubclass(spec.pipeline_class, Pipeline)
    assert list(inspect.signature(spec.pipeline_class.load).parameters) == [
        "paths", "device", "dtype", "offload", "networks"]
    assert callable(spec.module("bench").bench) and isinstance(spec.module("bench").SETTINGS, dict)
    assert callable(spec.module("tiny").write_tiny_checkpoints) and callable(spec.module("tiny").tiny_inputs)
    assert all(callable(helper) for helper in spec.previews().values())
    spec.parse_options({})  # every default passes its own option's checks
    assert not [o.name for o in spec.options if o.name == "seed" and o.maximum is None]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("role", ["spec", "job", "pipeline"])
def test_production_modules_never_import_test_scaffolding(task: str, role: str) -> None:
    import ast

    tree = ast.parse(Path(TASKS[task].module(role).__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.startswith("engine.testing") or name.endswith(".tiny")}


@pytest.mark.parametrize("task", TASKS)
def test_tiny_run_end_to_end_and_cancelled_run_writes_nothing(task: str, tiny_hub: Path, tmp_path: Path) -> None:
    engine = engine_for(tiny_hub, tmp_path / "outputs")
    inputs, options = tiny(task, tmp_path / "inputs")
    result = engine.run(task, inputs, options)
    assert result.files["settings"].is_file() and len(result.files) > 1
    assert all(path.exists() for path in result.files.values())

    def cancel_at_first_report(fraction: float, message: str) -> None:
        token.cancel()

    from engine import CancelToken

    token = CancelToken()
    with pytest.raises(JobCancelled):
        engine.run(task, inputs, options, progress=cancel_at_first_report, cancel=token)
    runs = [p for p in (tmp_path / "outputs" / task).iterdir() if p != result.folder]
    assert runs == []


@pytest.mark.parametrize("task", TASKS)
def test_bad_input_fails_before_any_model_loads(task: str, tiny_hub: Path, tmp_path: Path) -> None:
    engine = engine_for(tiny_hub, tmp_path / "outputs")
    inputs, options = tiny(task, tmp_path / "inputs")
    missing = {name: value for name, value in inputs.items() if name != TASKS[task].inputs[0].name}
    with pytest.raises(InputError):
        engine.run(task, missing, options)
    with pytest.raises(InputError, match="Unknown option"):
        engine.run(task, inputs, {**options, "no_such_option": 1})
    assert engine.models.keys() == []
    assert not (tmp_path / "outputs").exists()  # not even the folders a successful run would have made


@pytest.mark.parametrize("task", TASKS)
def test_model_offload_stages_every_network_and_gives_the_same_files(task: str, tiny_hub: Path,
                                                                   tmp_path: Path) -> None:
    inputs, options = tiny(task, tmp_path / "inputs")
    plain = engine_for(tiny_hub, tmp_path / "plain").run(task, inputs, options)
    offloaded = engine_for(tiny_hub, tmp_path / "offload", offload="model")
    original = offloaded.pipeline
    with contextlib.ExitStack() as checks:
        def checked(name: str, *args: Any, **kwargs: Any) -> Pipeline:
            pipeline = original(name, *args, **kwargs)
            checks.enter_context(checking_stages(pipeline.offload, pipeline.networks()))
            return pipeline

        offloaded.pipeline = checked  # type: ignore[method-assign]
        result = offloaded.run(task, inputs, options)
    assert files_in(result.folder) == files_in(plain.folder)


def test_a_task_package_names_itself() -> None:
    assert list(TASKS) == sorted(TASKS, key=lambda name: (TASKS[name].order, name))
    with pytest.raises(AnimateError, match="Unknown task"):
        Engine(EngineConfig(offline=True)).task("nope")


@pytest.fixture(scope="module")
def client(tiny_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from gradio_client import Client

    from tabs import build_app

    outputs = tmp_path_factory.mktemp("api_outputs")
    demo = build_app(engine_for(tiny_hub, outputs))
    demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(outputs)])
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


@pytest.mark.parametrize("task", TASKS)
def test_the_tab_runs_the_task_through_gradio_client_by_name(task: str, client: Any, tmp_path: Path) -> None:
    from gradio_client import handle_file

    inputs, options = tiny(task, tmp_path)
    kinds = {item.name: item.kind for item in TASKS[task].inputs}

    def as_sent(name: str, value: Any) -> Any:
        if kinds[name] == "json" and not isinstance(value, Path):
            return json.dumps(value)  # the tab's JSON editor sends text
        if isinstance(value, list):
            return [handle_file(str(p)) for p in value]
        return handle_file(str(value)) if isinstance(value, Path) else value

    files = {name: as_sent(name, value) for name, value in inputs.items()}
    outputs = client.predict(**files, **options, api_name=f"/{task}")
    first = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    path = Path(first["video"] if isinstance(first, dict) else first)
    assert path.is_file() and path.stat().st_size > 0
