"""The engine: the one object that tabs, the CLI and the API talk to.

`Engine.run(task, inputs, options, progress)` parses the options once and validates inputs before any model loads,
resolves checkpoints through the Hub cache, takes a free device slot (one job per device; with several --devices,
jobs run side by side, one on each), builds the task's pipeline there over networks from that device's network cache
(each loaded once, shared between tasks, kept while memory allows) and writes the results plus settings.json into a
fresh run folder. `Engine.preview` runs a task's quick helpers for the tabs.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Hashable, Iterator, Mapping

from engine import cost
from engine.errors import AnimateError, InputError, JobCancelled, PreviewUnavailable
from engine.examples import Example
from engine.hub import Hub, human_size
from engine.jobs import (JobContext, JobResult, PreviewContext, Stopwatch, describe_file, pick_seed, seed_everything,
                         write_settings)
from engine.limits import Limits, applied
from engine.outputs import RunFolder, disk_full_error, earlier_runs, prune_outputs, sweep_staging
from engine.pipelines.base import OFFLOAD_MODES, CancelToken, Pipeline, Progress, RemainingTime, no_progress
from engine.tasks import Option, Options, TaskSpec, discover_tasks

if TYPE_CHECKING:  # engine.runtime imports torch: only when a job or a device is first needed
    from engine.runtime import DeviceSlot, DeviceSlots

__all__ = ["Engine", "EngineConfig", "Preview", "JobResult", "CancelToken", "Option", "Options", "TaskSpec",
           "RemainingTime", "Estimate", "Example", "JobCancelled", "human_size", "user_message"]
Estimate = cost.Estimate
DTYPE_NAMES = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}  # as --dtype names them
log = logging.getLogger("engine")


@dataclass(frozen=True)
class Preview:
    """What a preview gives a tab: a value to show, or None and a note saying why not (yet)."""

    value: Any
    note: str = ""


@dataclass
class EngineConfig:
    device: str = "auto"
    devices: tuple[str, ...] = ()  # several devices (--devices): one job per device in the app; windows split in a CLI job
    dtype: str = "auto"
    offload: str = "none"  # none | model
    outputs: Path = Path("outputs")
    cache_dir: Path | None = None
    offline: bool = False
    memory_budget_gb: float | None = None
    outputs_quota_gb: float | None = None  # after each run, delete the oldest finished runs until the outputs fit
    limits: Limits = field(default_factory=Limits)


class Engine:
    def __init__(self, config: EngineConfig | None = None, hub: Hub | None = None,
                 tasks: Mapping[str, TaskSpec] | None = None) -> None:
        self.config = config or EngineConfig()
        if self.config.offload not in OFFLOAD_MODES:
            raise InputError(f"Unknown offload mode '{self.config.offload}'. Use {' or '.join(OFFLOAD_MODES)}.")
        if (self.config.outputs_quota_gb or 0) < 0:
            raise InputError(f"The outputs quota must be a size in GB, not {self.config.outputs_quota_gb}.")
        self.tasks: dict[str, TaskSpec] = dict(tasks) if tasks is not None else discover_tasks()
        self.hub = hub or Hub(cache_dir=self.config.cache_dir, offline=self.config.offline)
        self._runtime_lock = threading.Lock()
        self._slots: DeviceSlots | None = None  # built on first need (nothing touches a GPU before)
        self._device_names = self.config.devices or (self.config.device,)
        if self.config.devices:  # named explicitly: check them now, so a typo fails at start, not at the first job
            from engine import runtime

            for name in self._device_names:
                runtime.choose_device(name)
        self._active: dict[Hashable, CancelToken] = {}
        self._fresh: set[Path] = set()  # runs being committed or just committed by run(): never pruned
        self._fresh_lock = threading.Lock()
        sweep_staging(*(Path(self.config.outputs) / name for name in self.tasks))  # left by killed runs

    # ------------------------------------------------------------------------------------------- runtime (lazy)
    @property
    def slots(self) -> DeviceSlots:
        """The job slots (runtime.DeviceSlots): one per device of --devices (else the one --device), each with its
        dtype and its own network cache under its own budget (--memory-budget-gb each; by default a share of that
        device's memory)."""
        with self._runtime_lock:
            if self._slots is None:
                from engine import runtime

                devices = [runtime.choose_device(name) for name in self._device_names]
                self._slots = runtime.DeviceSlots(
                    self._slot(device, worker=devices[:i].count(device), sharers=devices.count(device))
                    for i, device in enumerate(devices))
            return self._slots

    def _slot(self, device: Any, worker: int, sharers: int) -> DeviceSlot:
        """The `worker`-th slot on `device` (listed `sharers` times), with its dtype, cache and budget."""
        from engine import runtime

        budget = (int(self.config.memory_budget_gb * 2**30) if self.config.memory_budget_gb
                  else runtime.default_budget(device, sharers))
        return runtime.DeviceSlot(device, runtime.choose_dtype(self.config.dtype, device),
                                  runtime.ModelCache(budget, device=device), runtime.device_lock(device, worker))

    @property
    def device(self) -> Any:
        """The (first) device jobs run on."""
        return self.slots.first.device

    @property
    def dtype(self) -> Any:
        return self.slots.first.dtype

    @property
    def models(self) -> Any:
        """The (first) device's network cache."""
        return self.slots.first.models

    def task(self, name: str) -> TaskSpec:
        try:
            return self.tasks[name]
        except KeyError:
            raise InputError(f"Unknown task '{name}'. Available: {', '.join(self.tasks)}.") from None

    # ------------------------------------------------------------------------------------------- checkpoints
    def checkpoint_rows(self) -> list[dict[str, Any]]:
        """One row per (task, checkpoint): what the Models tab and `python -m engine list` show."""
        rows = []
        for spec in self.tasks.values():
            for name in spec.all_checkpoints:
                status = self.hub.status(name)
                ck = status.spec
                rows.append({
                    "task": spec.name, "checkpoint": name, "repo": ck.repo, "repo_type": ck.repo_type,
                    "revision": ck.revision, "files": ", ".join(ck.allow_patterns), "size": human_size(ck.size_mb * 2**20),
                    "size_mb": ck.size_mb, "gated": ck.gated, "cached": status.cached,
                    "path": str(status.path) if status.path else "", "optional": name in spec.optional_checkpoints,
                    "licence": ck.licence, "url": ck.url,
                })
        return rows

    def example_checkpoints(self, task: str) -> list[str]:
        """The checkpoints that hold a task's published demo inputs (offered as examples once cached)."""
        from engine import examples

        return examples.published_checkpoints(self.task(task).name)

    def download(self, task: str, progress: Progress = no_progress, examples: bool = False) -> dict[str, Path]:
        """Fetch every checkpoint of a task ahead of time (with `examples`, its published demo inputs too)."""
        names = [*self.task(task).all_checkpoints, *(self.example_checkpoints(task) if examples else [])]
        paths = {}
        for i, name in enumerate(names):
            def scaled(fraction: float, message: str, i: int = i) -> None:
                progress((i + fraction) / len(names), message)

            paths[name] = self.hub.resolve(name, scaled, task)
        progress(1.0, "All checkpoints are in the cache.")
        return paths

    def checkpoint(self, name: str, progress: Progress = no_progress, task: str | None = None) -> Path:
        """A checkpoint's local folder; errors name the download command of `task` (else of a task that uses it)."""
        return self.hub.resolve(name, progress, task or self._task_using(name))

    def _task_using(self, checkpoint: str) -> str | None:
        return next((spec.name for spec in self.tasks.values() if checkpoint in spec.all_checkpoints), None)

    # ------------------------------------------------------------------------------------------- pipelines
    def pipeline(self, task: str, progress: Progress = no_progress, options: Options | None = None,
                 slot: DeviceSlot | None = None) -> Pipeline:
        """The task's pipeline on a device slot (default: the first): a view over networks from that slot's network
        cache (loaded on first use), over the checkpoints its options need (the required ones when options is
        None)."""
        spec = self.task(task)
        slot = slot or self.slots.first
        paths = {name: self.checkpoint(name, progress, task) for name in spec.run_checkpoints(options)}
        progress(0.0, f"Loading {spec.title} models")
        return spec.pipeline_class.load(paths, slot.device, slot.dtype, offload=self.config.offload,
                                        networks=slot.models)

    def preview(self, task: str, name: str, **values: Any) -> Preview:
        """Run one of a task's preview helpers (job.PREVIEWS) under the preview policy (see PreviewContext)."""
        helpers = self.task(task).previews()
        if name not in helpers:
            raise InputError(f"The {task} task has no '{name}' preview. Available: {', '.join(helpers) or 'none'}.")
        try:
            with applied(self.config.limits):
                return Preview(helpers[name](PreviewContext(self, task), **values))
        except PreviewUnavailable as why:
            return Preview(None, str(why))

    # ------------------------------------------------------------------------------------------- before and after
    def examples(self, task: str) -> list[Example]:
        """The task's one-click examples: the project's own inputs, plus published demo inputs already cached."""
        from engine import examples

        def cached_folder(name: str) -> Path | None:
            status = self.hub.status(name)
            return status.path if status.cached else None

        return examples.examples(self.task(task).name, cached_folder)

    def estimate(self, task: str, inputs: Mapping[str, Any], options: Mapping[str, Any] | None = None
                 ) -> cost.Estimate | None:
        """Time and memory a run with these inputs (paths; only headers are read) and options would take here, from
        the task's cost model and the pace of earlier runs (None: the task has no cost model)."""
        from engine import runtime

        resolved = self.task(task).parse_options(options)
        # the device's name only: building the model cache would touch the GPU (never in a ZeroGPU main process)
        first = self._slots.first if self._slots else None
        device = first.device if first else runtime.choose_device(self._device_names[0])
        dtype = DTYPE_NAMES[str(first.dtype)] if first else self.config.dtype
        dtype = "fp32" if dtype == "auto" and device.type == "cpu" else dtype  # runtime.choose_dtype's CPU choice
        with applied(self.config.limits):
            return cost.estimate(task, inputs, resolved, str(device), dtype, self.history(task))

    def history(self, task: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """settings.json of earlier finished runs (of one task, or all), newest first, each with its "folder"."""
        return earlier_runs(Path(self.config.outputs), task, limit)

    # ------------------------------------------------------------------------------------------- jobs
    def cancel(self, owner: Hashable) -> bool:
        """Cancel the running job started by `owner` (a UI session id, say). True if one was running."""
        token = self._active.get(owner)
        if token is not None:
            token.cancel()
        return token is not None

    def cancel_all(self) -> int:
        """Cancel every running job that has an owner (when the server stops). Returns how many are still running."""
        tokens = list(self._active.values())
        for token in tokens:
            token.cancel()
        return len(tokens)

    def run(self, task: str, inputs: Mapping[str, Any], options: Mapping[str, Any] | None = None,
            progress: Progress = no_progress, cancel: CancelToken | None = None, owner: Hashable = None,
            out_dir: Path | None = None) -> JobResult:
        with applied(self.config.limits):
            return self._run(task, inputs, options, progress, cancel, owner, out_dir)

    def _run(self, task: str, inputs: Mapping[str, Any], options: Mapping[str, Any] | None, progress: Progress,
             cancel: CancelToken | None, owner: Hashable, out_dir: Path | None) -> JobResult:
        from engine import runtime

        spec = self.task(task)
        cancel = cancel or CancelToken()
        timings: dict[str, float] = {}
        folder = RunFolder(Path(self.config.outputs), task, out_dir)  # first: a bad --out fails before any work
        if owner is not None:
            self._active[owner] = cancel
        try:
            with Stopwatch(timings, "validate"):
                resolved = spec.parse_options(options)
                if "seed" in resolved:
                    resolved = resolved.replace(seed=pick_seed(resolved.seed))
                prepared = spec.job.validate(dict(inputs), resolved)
                modelled = cost.work(task, inputs, resolved)
            with self._device_slot(cancel, progress) as slot, \
                    runtime.out_of_memory_as_resource_error(slot.models), slot.models.pinned():
                if "seed" in resolved:
                    seed_everything(resolved["seed"])

                def get_pipeline(other: str | None = None) -> Any:
                    """This run's pipeline, or (by name) another task's, used inside this job's device slot."""
                    with Stopwatch(timings, "load"):
                        return self.pipeline(task, progress, resolved, slot) if other is None else \
                            self.pipeline(other, progress, slot=slot)

                ctx = JobContext(task, prepared, resolved, folder.staging, progress, cancel, get_pipeline,
                                 self.checkpoint, timings)
                with Stopwatch(timings, "run"):
                    files = spec.job.execute(ctx)
                cancel.check()
            checkpoints = self._used_checkpoints(spec)
            timings["run"] = timings.get("run", 0.0) - timings.get("load", 0.0)
            settings = write_settings(folder.staging / "settings.json", task=task,
                                      inputs=_recorded_inputs(spec, inputs), options=dict(resolved),
                                      checkpoints=checkpoints, device=str(slot.device), dtype=str(slot.dtype),
                                      timings=timings, outputs=files, folder=folder.staging, warnings=ctx.warnings,
                                      details=ctx.details, estimate=_recorded_estimate(modelled))
            with self._fresh_lock:
                self._fresh.add(folder.final)
            final = folder.commit()
        except BaseException as exc:
            with self._fresh_lock:
                self._fresh.discard(folder.final)
            full = disk_full_error(exc, folder.final.parent, folder.staging)
            folder.discard()
            if full:
                raise full from exc
            raise
        finally:
            if owner is not None:
                self._active.pop(owner, None)
        try:
            if self.config.outputs_quota_gb is not None:
                with self._fresh_lock:
                    keep = set(self._fresh)  # with several devices, runs other jobs committed but not yet returned
                prune_outputs(Path(self.config.outputs), int(self.config.outputs_quota_gb * 2**30), keep=keep)
        finally:
            with self._fresh_lock:
                self._fresh.discard(folder.final)
        files = {k: final / p.relative_to(folder.staging) for k, p in files.items()}
        files["settings"] = final / "settings.json"
        progress(1.0, "Done")
        return JobResult(final, files, settings)

    @contextlib.contextmanager
    def _device_slot(self, cancel: CancelToken, progress: Progress) -> Iterator[DeviceSlot]:
        """A free device slot, taken after validation (checking inputs never holds up another user's job). While
        every slot is busy, say so with the job's place in line, and keep honouring Stop."""
        several = len(self.slots.slots) > 1

        def waiting(ahead: int) -> None:
            if ahead:
                progress(0.0, f"Waiting for a free device: {ahead} job{'s' * (ahead > 1)} ahead")
            else:
                progress(0.0, "Waiting for a free device" if several else "Waiting for the running job to finish")

        with self.slots.take(cancel.check, waiting) as slot:
            yield slot

    def _used_checkpoints(self, spec: TaskSpec) -> dict[str, dict[str, str]]:
        """Repo, requested revision and resolved commit of each cached checkpoint of the task (for settings.json)."""
        used = {}
        for name in spec.all_checkpoints:
            status = self.hub.status(name)
            if status.cached:
                used[name] = {"repo": status.spec.repo, "revision": status.spec.revision, "commit": status.path.name}
        return used

    def bench(self, task: str, device: str = "auto", size: str = "full", **settings: Any) -> dict[str, Any]:
        """Run the task's benchmark (full-size networks with random weights) with the engine's dtype and offload."""
        from engine import bench

        return bench.run(self.task(task), device=device, size=size, dtype=self.config.dtype,
                         offload=self.config.offload, **settings)


def _recorded_inputs(spec: TaskSpec, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs as settings.json records them: JSON (text or a file) by content (so a run can be repeated), files by
    name and sha256 (never the path: from the UI it is a server temp folder)."""
    kinds = {item.name: item.kind for item in spec.inputs}
    recorded = dict(inputs)
    for name, value in inputs.items():
        if kinds.get(name) != "json":
            recorded[name] = _recorded_files(value)
            continue
        if not isinstance(value, (str, Path)):
            continue
        if isinstance(value, str) and value.lstrip().startswith(("[", "{")):  # text: never a path (may be too long)
            recorded[name] = json.loads(value)
        elif Path(value).is_file():
            recorded[name] = json.loads(Path(value).read_text())
    return recorded


def _recorded_estimate(work: cost.Work | None) -> dict[str, Any] | None:
    """The cost model's figures for this run (benchmark-machine seconds): later estimates compare them with the
    measured time to learn this machine's pace."""
    if work is None:
        return None
    return {"model_s": None if work.seconds is None else round(work.seconds, 3), "counts": work.counts}


def _recorded_files(value: Any) -> Any:
    """A file input (a path, or a list of them) as {"name", "sha256"}; anything else as it is."""
    if isinstance(value, (list, tuple)):
        return [_recorded_files(v) for v in value]
    return describe_file(Path(value)) if isinstance(value, (str, Path)) else value


def user_message(exc: BaseException) -> str:
    """Text to show a user for any failure: our own errors as they are, anything else with a pointer to the log."""
    if isinstance(exc, AnimateError):
        return str(exc)
    return f"Unexpected error ({exc.__class__.__name__}: {exc}). Details are in the server log; please report it."
