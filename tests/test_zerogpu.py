"""ZeroGPU: a task's Run handler prepared in the main process (inputs checked, networks built) and run in a forked
worker the way `spaces.GPU` runs it (multiprocessing "fork", pickled arguments and results, duration asked for from
the call's arguments), against the tiny models; Stop reaches the worker; without SPACES_ZERO_GPU nothing changes."""
from __future__ import annotations

import inspect
import json
import math
import multiprocessing
import os
import pickle
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from engine import Engine, EngineConfig, cost, media
from engine.errors import JobCancelled
from tabs import zerogpu
from tabs.widgets import named_handler

SIZE = 64
TRACKS = [[[10, 12], [30, 20], [44, 40]], [[50, 50], [46, 30]]]
WORKER_TIMEOUT_S = 240
OPTIONS = {"frames": 4, "steps": 2, "size": SIZE, "fps": 10, "seed": 3}


class FakeZeroGPU:
    """`spaces.GPU` as ZeroGPU runs it: the duration (a number or a callable of the call's arguments) is asked for
    first, then the function runs in a forked worker that receives its arguments pickled and returns its result (or
    exception) pickled. `probe()` runs in the worker after the function; what it returns comes back too."""

    def __init__(self, probe: Callable[[], Any] = lambda: None) -> None:
        self.requested: list[float] = []
        self.probes: list[Any] = []
        self.probe = probe

    def GPU(self, task: Callable | None = None, *, duration: Any = None, size: str | None = None) -> Callable:
        def decorate(fn: Callable) -> Callable:
            def call(*args: Any, **kwargs: Any) -> Any:
                self.requested.append(duration(*args, **kwargs) if callable(duration) else duration)
                payload = pickle.dumps((args, kwargs))  # what crosses the process boundary
                context = multiprocessing.get_context("fork")
                receive, send = context.Pipe(duplex=False)
                worker = context.Process(target=self._worker, args=(fn, payload, send), daemon=True)
                worker.start()
                send.close()
                if not receive.poll(WORKER_TIMEOUT_S):
                    worker.kill()
                    raise TimeoutError(f"the GPU worker gave no answer in {WORKER_TIMEOUT_S} s")
                outcome, value, probed = pickle.loads(receive.recv_bytes())
                worker.join(30)
                self.probes.append(probed)
                if outcome == "error":
                    raise value
                return value

            return call

        return decorate(task) if callable(task) else decorate

    def _worker(self, fn: Callable, payload: bytes, send: Any) -> None:
        args, kwargs = pickle.loads(payload)
        try:
            outcome, value = "ok", fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (sent back as ZeroGPU does)
            outcome, value = "error", exc
        send.send_bytes(pickle.dumps((outcome, value, self.probe())))
        send.close()


@pytest.fixture
def zero(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeZeroGPU]:
    def install(probe: Callable[[], Any] = lambda: None) -> FakeZeroGPU:
        fake = FakeZeroGPU(probe)
        monkeypatch.setenv("SPACES_ZERO_GPU", "true")
        monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake.GPU))
        return fake

    return install


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image = tmp_path / "picture.png"
    media.write_png(image, np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    return {"image": image, "text": text}


class Request:
    """What the handler needs of gr.Request (picklable, as Gradio's is for ZeroGPU)."""

    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


def motion_handler(engine: Engine) -> Callable:
    """A Run handler shaped as tabs.widgets.wire_task makes it; results leave as file paths (text)."""
    spec = engine.task("motion")
    required = inspect.Parameter.empty
    defaults: dict[str, Any] = {"image": required, "trajectories": required, "brush": None}
    defaults.update({option.name: option.default for option in spec.options})

    def body(values: dict[str, Any], request: Any, progress: Any) -> tuple[str, str, int]:
        inputs = {name: values[name] or None for name in ("image", "trajectories", "brush")}
        options = {option.name: values[option.name] for option in spec.options}
        result = engine.run("motion", inputs, options, owner=getattr(request, "session_hash", None))
        return str(result.files["video"]), str(result.files["settings"]), os.getpid()

    return named_handler(defaults, body)


@pytest.fixture
def engine(tiny_hub: Path, tmp_path: Path) -> Engine:
    return Engine(EngineConfig(device="cpu", outputs=tmp_path / "outputs", cache_dir=tiny_hub, offline=True))


def test_without_zerogpu_nothing_changes(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    handler = motion_handler(engine)
    assert zerogpu.task_handler(engine, "motion", handler) is handler
    assert zerogpu.gpu(len) is len
    assert not zerogpu.request_stop("nobody")
    assert zerogpu.enabled({"SPACES_ZERO_GPU": "true"}) and not zerogpu.enabled({"SPACES_ZERO_GPU": "0"})


def test_job_runs_in_a_forked_worker_on_networks_built_in_the_main_process(zero, engine: Engine,
                                                                           files: dict[str, Path]) -> None:
    fake = zero(probe=lambda: dict(engine.models.builds))
    handler = zerogpu.task_handler(engine, "motion", motion_handler(engine))
    assert handler is not motion_handler and "trajectories" in inspect.signature(handler).parameters

    video, settings, worker_pid = handler(str(files["image"]), json.dumps(TRACKS), None, **OPTIONS,
                                          request=Request("session-1"), progress=None)
    assert worker_pid != os.getpid()  # it ran in the forked worker
    built_here = dict(engine.models.builds)
    assert built_here and all(count == 1 for count in built_here.values())  # every network built in the main process
    assert fake.probes == [built_here]  # ... and none again in the worker
    assert Path(video).is_file() and len(media.read_video(video)[0]) == 4  # the result crossed back as a file
    assert json.loads(Path(settings).read_text())["options"]["steps"] == 2
    assert fake.requested == [zerogpu.gpu_seconds(engine, "motion", {}, engine.task("motion").parse_options(OPTIONS))]


def test_bad_input_is_refused_in_the_main_process_without_asking_for_a_gpu(zero, engine: Engine,
                                                                           files: dict[str, Path]) -> None:
    import gradio as gr

    fake = zero()
    handler = zerogpu.task_handler(engine, "motion", motion_handler(engine))
    with pytest.raises(gr.Error, match="notes.png"):
        handler(str(files["text"]), json.dumps(TRACKS), None, **OPTIONS, request=Request("s"), progress=None)
    assert fake.requested == [] and not engine.models.keys()  # no GPU asked for, no model loaded


def test_stop_reaches_the_job_in_the_worker(zero, engine: Engine, files: dict[str, Path]) -> None:
    zero()
    handler = zerogpu.task_handler(engine, "motion", motion_handler(engine))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = handler(str(files["image"]), json.dumps(TRACKS), None,
                                        **{**OPTIONS, "steps": 200}, request=Request("session-2"), progress=None)
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not zerogpu.request_stop("session-2"):  # true once the job is on the worker
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.1)
    thread.join(120)
    assert isinstance(outcome.get("error"), JobCancelled), outcome
    assert not list((engine.config.outputs / "motion").glob("*"))  # nothing written


def test_gpu_time_grows_with_the_jobs_size(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = engine.task("motion")
    seconds = {name: zerogpu.gpu_seconds(engine, "motion", {}, spec.parse_options(options))
               for name, options in {"base": {"frames": 25, "steps": 25, "size": 512},
                                     "steps": {"frames": 25, "steps": 50, "size": 512},
                                     "frames": {"frames": 50, "steps": 25, "size": 512},
                                     "size": {"frames": 25, "steps": 25, "size": 1024}}.items()}
    assert seconds["base"] < seconds["steps"] and seconds["base"] < seconds["frames"] < seconds["size"]
    assert all(value >= zerogpu.MIN_SECONDS for value in seconds.values())

    # on a GPU with no earlier run to measure its pace: the cost model's benchmark-CPU seconds, scaled to a GPU
    monkeypatch.setattr(engine, "estimate", lambda *args, **kwargs: None)
    options = spec.parse_options({"frames": 25, "steps": 25, "size": 512})
    cpu = cost.work("motion", {}, options).seconds
    expected = math.ceil(zerogpu.MARGIN * (zerogpu.PACES["motion"].fixed + cpu / zerogpu.CPU_SECONDS_PER_GPU_SECOND))
    assert zerogpu.gpu_seconds(engine, "motion", {}, options) == max(zerogpu.MIN_SECONDS, expected)

    # a task without a time model (4D): the pace table, from the steps and the size
    fourd = engine.task("fourd")
    quick, slow = (zerogpu.gpu_seconds(engine, "fourd", {}, fourd.parse_options({"steps": steps, "size": 576}))
                   for steps in (10, 500))
    assert zerogpu.MIN_SECONDS <= quick < slow

    video = tmp_path / "dance.mp4"  # the table's frame count comes from a video at the task's fps
    media.write_mp4(video, np.zeros((50, 64, 64, 3), np.uint8), fps=25)
    pose = engine.task("pose").parse_options({"fps": 25})
    assert zerogpu.job_frames(engine, "pose", {"image": None, "motion": str(video)}, pose) == 50
    assert zerogpu.job_frames(engine, "pose", {"motion": str(video)}, pose.replace(fps=5)) == 10


def test_the_apps_run_endpoint_runs_in_the_worker_and_returns_picklable_results(zero, engine: Engine,
                                                                                files: dict[str, Path]) -> None:
    """The Run handler the tab wires (tabs.widgets.wire_task), called as Gradio calls it."""
    from tabs import build_app

    fake = zero(probe=lambda: os.getpid())
    run = next(fn for fn in build_app(engine).fns.values() if fn.api_name == "motion").fn
    shown = run(str(files["image"]), json.dumps(TRACKS), None, **OPTIONS, request=Request("session-3"))
    assert fake.probes and fake.probes[0] != os.getpid()
    videos = [value for value in pickle.loads(pickle.dumps(shown)) if isinstance(value, str) and value.endswith(".mp4")]
    assert videos and all(Path(video).is_file() for video in videos)
