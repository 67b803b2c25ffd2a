"""Batch runs: `python -m engine batch JOBS.jsonl --out DIR [--devices ...] [--ray ADDRESS|auto]`.

Each line of the JSONL file is one job in the form settings.json records it: {"task", "inputs", "options"} plus an
optional "id"; the other keys a settings.json holds (checkpoints, timings, versions ...) are ignored, so `jq -c .`
of earlier runs' settings.json files repeats them. A file input is a path (relative to the JSONL's folder) or, as
recorded, {"name", "sha256"}: the file of that name in the --inputs folder or the JSONL's folder, checked against its
hash. Job <id> writes into DIR/<id> (id: the line's "id", else its line number), which exists only once the job has
succeeded (the engine's staging folder), so a second run of the same file skips the finished jobs and runs the rest.
Locally the jobs run through one Engine from max(1, len(--devices)) threads; with --ray, as Ray tasks (one GPU each
when the cluster has GPUs, else one CPU) that each keep an Engine per worker process and write into DIR themselves.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, TextIO

from engine import Engine, EngineConfig, TaskSpec, user_message
from engine.errors import InputError, JobCancelled, exit_code_of
from engine.jobs import describe_file
from engine.outputs import sweep_staging
from engine.pipelines.base import CancelToken, Progress

log = logging.getLogger("engine")

JOB_KEYS = {"id", "task", "inputs", "options"}
# what else settings.json records (engine/jobs.py write_settings; "folder": Engine.history): ignored in a line
SETTINGS_KEYS = {"created", "outputs", "checkpoints", "device", "dtype", "versions", "timings_s", "warnings",
                 "details", "estimate", "folder"}
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SUMMARY_FILES = ("summary.json", "summary.csv")
INPUT_ERROR_EXIT = exit_code_of(InputError)
INTERRUPTED_EXIT = exit_code_of(JobCancelled)
OK_STATUSES = ("ok", "skipped")


@dataclass(frozen=True)
class Job:
    """One line to run: task, inputs resolved to local paths (or JSON content), options as given."""

    id: str
    line: int
    task: str
    inputs: dict[str, Any]
    options: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What became of one line. status: ok, skipped (finished in an earlier run), invalid (the line cannot run as
    written), failed (the run raised), cancelled (interrupted), not run (interrupted before it started)."""

    job: str
    line: int
    task: str
    status: str
    seconds: float = 0.0
    folder: str = ""
    error: str = ""
    kind: str = ""  # the error's class name (InputError, CheckpointError, ...)


# ------------------------------------------------------------------------------------------------- reading the file
def plan(jobs_file: Path, out: Path, tasks: Mapping[str, TaskSpec], inputs_dir: Path | None = None
         ) -> tuple[list[Job], list[Outcome]]:
    """The jobs still to run, and the outcomes known before running: lines already finished in `out` (skipped) and
    lines that cannot run (invalid, each naming its line). Reading never stops at a bad line."""
    try:
        text = jobs_file.read_bytes()
    except OSError as exc:
        raise InputError(f"Cannot read the jobs file {jobs_file}: {exc.strerror or exc}.") from None
    folders = [f for f in (inputs_dir, jobs_file.resolve().parent) if f is not None]
    hashes: dict[Path, str | None] = {}
    todo: list[Job] = []
    known: list[Outcome] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        job_id, task = f"{number:04d}", ""
        try:
            entry = _parse_line(raw)
            job_id = _job_id(entry, number)
            task = str(entry.get("task", ""))
            if job_id in seen:
                raise InputError(f"the id '{job_id}' is used by an earlier line; give each job its own id")
            seen.add(job_id)
            folder = out / job_id
            if (folder / "settings.json").is_file():
                known.append(Outcome(job_id, number, task, "skipped", folder=str(folder)))
                continue
            todo.append(_job(entry, job_id, number, tasks, folders, hashes))
        except InputError as exc:
            known.append(Outcome(job_id, number, task, "invalid", error=f"line {number}: {exc}", kind="InputError"))
    if not todo and not known:
        raise InputError(f"The jobs file {jobs_file} has no jobs: write one JSON object per line.")
    return todo, known


def _parse_line(raw: bytes) -> dict[str, Any]:
    try:
        entry = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not a JSON object ({exc})") from None
    if not isinstance(entry, dict):
        raise InputError("not a JSON object: write {\"task\": ..., \"inputs\": {...}, \"options\": {...}}")
    unknown = set(entry) - JOB_KEYS - SETTINGS_KEYS
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(sorted(unknown))}; a job has {', '.join(sorted(JOB_KEYS))} "
                         "(and whatever else a settings.json records)")
    return entry


def _job_id(entry: Mapping[str, Any], number: int) -> str:
    if "id" not in entry:
        return f"{number:04d}"
    job_id = str(entry["id"]) if isinstance(entry["id"], (str, int)) and not isinstance(entry["id"], bool) else ""
    if not JOB_ID.fullmatch(job_id) or job_id in SUMMARY_FILES:
        raise InputError(f"the id {entry['id']!r} cannot name a folder: use letters, digits, '.', '_' and '-' "
                         f"(at most 100, not starting with '.'; not {' or '.join(SUMMARY_FILES)})")
    return job_id


def _job(entry: Mapping[str, Any], job_id: str, number: int, tasks: Mapping[str, TaskSpec], folders: list[Path],
         hashes: dict[Path, str | None]) -> Job:
    name = entry.get("task")
    if not isinstance(name, str) or name not in tasks:
        raise InputError(f"unknown task {name!r}; available: {', '.join(tasks)}")
    spec = tasks[name]
    options, inputs = entry.get("options") or {}, entry.get("inputs") or {}
    if not isinstance(options, dict) or not isinstance(inputs, dict):
        raise InputError("\"options\" and \"inputs\" must be JSON objects ({\"name\": value, ...})")
    spec.parse_options(options)  # a bad option is this line's error now, not a failed run later
    return Job(job_id, number, spec.name, resolve_inputs(spec, inputs, folders, hashes), dict(options))


def resolve_inputs(spec: TaskSpec, given: Mapping[str, Any], folders: Sequence[Path],
                   hashes: dict[Path, str | None] | None = None) -> dict[str, Any]:
    """A line's inputs as Engine.run takes them. Files: a path (relative to folders[-1], the JSONL's folder) or a
    recorded {"name", "sha256"} found in the first of `folders` that has it, with that content. JSON inputs: their
    content, or a path to a .json file. `hashes` caches file hashes across lines."""
    hashes = {} if hashes is None else hashes
    kinds = {item.name: item for item in spec.inputs}
    resolved: dict[str, Any] = {}
    for name, value in given.items():
        if name not in kinds:
            raise InputError(f"the {spec.name} task has no input '{name}'; its inputs: {', '.join(kinds)}")
        if value is None or value == []:
            continue
        if kinds[name].kind == "json":
            text_content = isinstance(value, str) and value.lstrip().startswith(("[", "{"))
            resolved[name] = _local_path(name, value, folders[-1]) if isinstance(value, str) and not text_content \
                else value
        elif isinstance(value, list):
            if not kinds[name].multiple:
                raise InputError(f"input '{name}' takes one file, not a list")
            resolved[name] = [_input_file(name, v, folders, hashes) for v in value]
        elif kinds[name].multiple:  # one file for an input that takes several
            resolved[name] = [_input_file(name, value, folders, hashes)]
        else:
            resolved[name] = _input_file(name, value, folders, hashes)
    return resolved


def _input_file(name: str, value: Any, folders: Sequence[Path], hashes: dict[Path, str | None]) -> Path:
    if isinstance(value, str):
        return _local_path(name, value, folders[-1])
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise InputError(f"input '{name}' must be a path or a recorded {{\"name\", \"sha256\"}}, not {value!r}")
    file_name, expected = value["name"], value.get("sha256")
    if Path(file_name).name != file_name or file_name in ("", ".", ".."):
        raise InputError(f"input '{name}': the recorded name {file_name!r} is not a plain file name")
    candidates = [folder / file_name for folder in folders if (folder / file_name).exists()]
    if not candidates:
        raise InputError(f"input '{name}': {file_name} is not in {' or '.join(map(str, folders))}; put the file "
                         "there (or give --inputs the folder that holds it)")
    for path in candidates:
        if expected is None or _sha256(path, hashes) == expected:
            return path.resolve()
    raise InputError(f"input '{name}': {candidates[0]} is not the file that was recorded (its sha256 differs from "
                     f"{expected[:12]}...); put the original there or give the path instead")


def _local_path(name: str, value: str, base: Path) -> Path:
    path = (base / Path(value).expanduser()).resolve()
    if not path.exists():
        raise InputError(f"input '{name}': {path} does not exist (relative paths start at the JSONL's folder)")
    return path


def _sha256(path: Path, hashes: dict[Path, str | None]) -> str | None:
    if path not in hashes:
        hashes[path] = describe_file(path).get("sha256")  # None for a folder
    return hashes[path]


# ------------------------------------------------------------------------------------------------- running
class Reporter:
    """One line per event on stderr, prefixed with the job's id (lines of concurrent jobs interleave whole). Progress
    is printed when it passes another tenth, or when its message changes and the last line is `quiet_s` old (a job
    reporting every frame prints a few lines, not hundreds)."""

    quiet_s = 5.0

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def say(self, job_id: str, text: str) -> None:
        with self._lock:
            print(f"[{job_id}] {text}", file=self.stream, flush=True)

    def started(self, job: Job) -> None:
        self.say(job.id, f"{job.task}: started (line {job.line})")

    def progress(self, job: Job) -> Progress:
        last = {"message": "", "tenth": -1, "time": 0.0}

        def report(fraction: float, message: str) -> None:
            tenth, now = int(max(0.0, min(1.0, fraction)) * 10), time.monotonic()
            if tenth != last["tenth"] or (message != last["message"] and now - last["time"] >= self.quiet_s):
                last.update(message=message, tenth=tenth, time=now)
                self.say(job.id, f"{fraction:4.0%} {message}")

        return report

    def finished(self, outcome: Outcome) -> None:
        ran = f" after {outcome.seconds:.1f} s" if outcome.status in ("ok", "failed", "cancelled") else ""
        where = f" -> {outcome.folder}" if outcome.folder else ""
        reason = f": {outcome.error}" if outcome.error else ""
        self.say(outcome.job, f"{outcome.status}{ran}{where}{reason}")


def run_job(engine: Engine, job: Job, out: Path, reporter: Reporter, cancel: CancelToken) -> Outcome:
    """Run one job into out/<id>; every failure becomes its Outcome (only an interrupt propagates). The caller
    reports the outcome."""
    folder = out / job.id
    if cancel.cancelled:
        return Outcome(job.id, job.line, job.task, "not run")
    reporter.started(job)
    start = time.perf_counter()
    status, error, kind = "ok", "", ""
    try:
        engine.run(job.task, job.inputs, job.options, progress=reporter.progress(job), cancel=cancel,
                   out_dir=folder)
    except JobCancelled as exc:
        status, error, kind = "cancelled", str(exc), type(exc).__name__
    except Exception as exc:  # reported in the summary; the other jobs go on
        if type(exc).__module__ != "engine.errors":
            log.exception("batch job %s (line %d) failed", job.id, job.line)
        status, error, kind = "failed", user_message(exc), type(exc).__name__
    return Outcome(job.id, job.line, job.task, status, round(time.perf_counter() - start, 3),
                   str(folder) if status == "ok" else "", error, kind)


def run_local(engine: Engine, jobs: Sequence[Job], out: Path, reporter: Reporter,
              cancel: CancelToken | None = None) -> tuple[list[Outcome], bool]:
    """Run the jobs through one engine from max(1, len(devices)) threads (the engine gives each job a device).
    Ctrl+C cancels the running jobs (their staging folders are discarded) and starts no more. Returns the outcomes
    and whether the batch was interrupted."""
    cancel = cancel or CancelToken()
    workers = max(1, len(engine.config.devices))
    interrupted = False
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="batch") as pool:
        def run_and_report(job: Job) -> Outcome:
            outcome = run_job(engine, job, out, reporter, cancel)
            reporter.finished(outcome)
            return outcome

        futures = [pool.submit(run_and_report, job) for job in jobs]
        while True:
            try:
                _, running = concurrent.futures.wait(futures, timeout=0.2)
                if not running:
                    break
            except KeyboardInterrupt:
                interrupted = True
                cancel.cancel()
                reporter.say("batch", "interrupted: stopping the running jobs, starting no more")
    return [future.result() for future in futures], interrupted


@contextlib.contextmanager
def ray_cluster(address: str) -> Iterator[Any]:
    """The `ray` module connected to the cluster at `address` ("auto": the one this machine belongs to), or to the
    instance this process already started (tests); disconnected again on leaving if connected here."""
    ray = import_ray()
    connect = not ray.is_initialized()
    if connect:
        try:
            ray.init(address=address)
        except ConnectionError as exc:
            raise InputError(f"No Ray cluster at --ray {address} ({exc}). Start one (`ray start --head`) or give "
                             "the address of a running one.") from None
    try:
        yield ray
    finally:
        if connect:
            ray.shutdown()


def run_ray(ray: Any, config: EngineConfig, jobs: Sequence[Job], out: Path, reporter: Reporter
            ) -> tuple[list[Outcome], bool]:
    """Run each job as a Ray task, one GPU each when the cluster has GPUs, else one CPU. Workers write into `out`,
    which must be storage they all share. Ctrl+C cancels the tasks."""
    gpus = ray.cluster_resources().get("GPU", 0)
    resources = {"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}
    reporter.say("batch", f"Ray: {len(jobs)} jobs as tasks with {resources} each ({gpus:g} GPUs in the cluster)")
    remote = ray.remote(run_in_worker).options(**resources)
    worker_config = replace(config, devices=())  # Ray hands each task its own device
    refs = {remote.remote(worker_config, job, out): job for job in jobs}
    outcomes: dict[Any, Outcome] = {}
    pending, interrupted = list(refs), False
    while pending:
        try:
            done, pending = ray.wait(pending, num_returns=1)
        except KeyboardInterrupt:
            interrupted = True
            reporter.say("batch", "interrupted: cancelling the Ray tasks")
            for ref in pending:
                ray.cancel(ref)
            done, pending = pending, []
        for ref in done:
            outcomes[ref] = _ray_outcome(ray, ref, refs[ref], interrupted)
            reporter.finished(outcomes[ref])
    return [outcomes[ref] for ref in refs], interrupted


def _ray_outcome(ray: Any, ref: Any, job: Job, interrupted: bool) -> Outcome:
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return Outcome(job.id, job.line, job.task, "cancelled" if interrupted else "failed", error="cancelled in Ray")
    except ray.exceptions.RayError as exc:  # the worker died (out of memory, a lost node); a job's errors are Outcomes
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Outcome(job.id, job.line, job.task, "failed", error=f"Ray: {type(exc).__name__}: {first_line}",
                       kind=type(exc).__name__)


_WORKER_ENGINES: dict[str, Engine] = {}  # one per engine configuration in each Ray worker process: models stay loaded


def run_in_worker(config: EngineConfig, job: Job, out: Path) -> Outcome:
    """A Ray task's body: the worker's engine for this configuration runs the job (progress to the worker's stderr,
    which Ray shows on the driver)."""
    engine = _WORKER_ENGINES.get(repr(config))
    if engine is None:
        engine = _WORKER_ENGINES[repr(config)] = Engine(config)
    return run_job(engine, job, out, Reporter(), CancelToken())


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray, which is not installed: pip install ray") from None
    return ray


# ------------------------------------------------------------------------------------------------- the summary
COLUMNS = ("job", "line", "task", "status", "seconds", "folder", "error")


def summary_table(outcomes: Iterable[Outcome]) -> str:
    rows = [("job", "task", "status", "seconds", "folder or error")]
    rows += [(o.job, o.task, o.status, f"{o.seconds:.1f}", o.folder or o.error) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4]
                     for row in rows)


def make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"--out {out} is a file, not a folder.") from None
    except OSError as exc:
        raise InputError(f"Cannot create --out {out}: {exc.strerror or exc}. Choose a folder you can write to.") from None


def check_summary_writable(out: Path) -> None:
    """Refuse (before any job runs) to replace a summary file an earlier batch did not write."""
    existing = out / SUMMARY_FILES[0]
    if existing.exists():
        with contextlib.suppress(OSError, ValueError):
            if isinstance(json.loads(existing.read_text()).get("jobs"), list):
                return
        raise InputError(f"{existing} exists and is not a batch summary; nothing is overwritten. Choose another --out.")


def write_summary(out: Path, jobs_file: Path, outcomes: Sequence[Outcome]) -> Path:
    """DIR/summary.json (and .csv), replaced whole (written beside, then renamed) on every batch run."""
    counts = {status: sum(o.status == status for o in outcomes) for status in dict.fromkeys(o.status for o in outcomes)}
    summary = {"jobs_file": str(jobs_file), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "counts": counts,
               "jobs": [asdict(o) for o in outcomes]}
    _replace(out / SUMMARY_FILES[0], json.dumps(summary, indent=2))
    lines: list[str] = []

    class Lines:
        def write(self, text: str) -> None:
            lines.append(text)

    writer = csv.DictWriter(Lines(), fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(o) for o in outcomes)
    _replace(out / SUMMARY_FILES[1], "".join(lines))
    return out / SUMMARY_FILES[0]


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def exit_code(outcomes: Iterable[Outcome], interrupted: bool) -> int:
    """0 when every job is done (now or earlier), 130 when interrupted, 2 when every problem is bad input (an
    invalid line or an InputError), else 1."""
    if interrupted:
        return INTERRUPTED_EXIT
    problems = [o for o in outcomes if o.status not in OK_STATUSES]
    if not problems:
        return 0
    return INPUT_ERROR_EXIT if all(o.kind == "InputError" for o in problems) else 1


# ------------------------------------------------------------------------------------------------- command line
def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "batch", parents=[common], help="run many jobs from a JSONL file (one settings.json-like job per line)",
        description="Run the jobs of a JSONL file, one {\"task\", \"inputs\", \"options\"[, \"id\"]} object per line "
                    "(a settings.json of an earlier run, `jq -c .`, is one). Each job writes into OUT/<id>; jobs "
                    "already finished there are skipped, so running the same file again resumes it. Exit code: 0 "
                    "all done, 2 only bad lines or inputs, 1 other failures, 130 interrupted.")
    parser.add_argument("jobs", type=Path, metavar="JOBS.jsonl", help="one job per line")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder of the job folders and summary.json/.csv (created if missing; shared storage "
                             "with --ray on several machines)")
    parser.add_argument("--inputs", type=Path,
                        help="folder where input files recorded as {name, sha256} are looked up first (then the "
                             "JSONL's folder)")
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="run the jobs as Ray tasks on this cluster (auto: the one this machine is part of; "
                             "needs pip install ray); without it, locally on --device/--devices")
    parser.set_defaults(command="batch")
    return parser


def run_command(args: argparse.Namespace, reporter: Reporter | None = None) -> int:
    """The `batch` subcommand: one engine from the engine flags (its outputs folder is --out), then run_batch."""
    from engine.settings import config_from_args

    out = args.out.resolve()
    engine = Engine(config_from_args(args, outputs=out))
    _, code = run_batch(engine, args.jobs, out, inputs_dir=args.inputs, ray_address=args.ray,
                        reporter=reporter or Reporter())
    return code


def run_batch(engine: Engine, jobs_file: Path, out: Path, inputs_dir: Path | None = None,
              ray_address: str | None = None, reporter: Reporter | None = None,
              cancel: CancelToken | None = None) -> tuple[list[Outcome], int]:
    """Plan the file's jobs, run those not finished yet (locally, or on Ray with an address), print the summary table
    and write summary.json/.csv into `out`. Returns the outcomes in line order and the exit code."""
    reporter = reporter or Reporter()
    out = out.resolve()
    with ray_cluster(ray_address) if ray_address else contextlib.nullcontext() as ray:
        jobs, known = plan(jobs_file, out, engine.tasks, inputs_dir.resolve() if inputs_dir else None)
        make_folder(out)
        check_summary_writable(out)
        sweep_staging(out)  # staging folders of jobs killed in an earlier batch
        for outcome in known:
            reporter.finished(outcome)
        reporter.say("batch", f"{len(jobs)} to run, {sum(o.status == 'skipped' for o in known)} finished earlier, "
                              f"{sum(o.status == 'invalid' for o in known)} invalid")
        if ray is not None:
            ran, interrupted = run_ray(ray, engine.config, jobs, out, reporter)
        else:
            ran, interrupted = run_local(engine, jobs, out, reporter, cancel)
    outcomes = sorted([*known, *ran], key=lambda o: o.line)
    print(summary_table(outcomes))
    print(f"summary: {write_summary(out, jobs_file.resolve(), outcomes)}")
    return outcomes, exit_code(outcomes, interrupted)
