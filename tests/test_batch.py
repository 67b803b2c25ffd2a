"""Batch runs (engine/batch.py): a JSONL of jobs with bad lines runs through, resumes without redoing finished jobs,
repeats an earlier run's settings.json, stops cleanly on Ctrl+C, and runs on a local Ray instance."""
from __future__ import annotations

import _thread
import argparse
import csv
import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine import Engine, EngineConfig, batch, media
from engine.errors import InputError
from engine.__main__ import build_parser, main
from engine.tasks import Input, Option, TaskSpec, discover_tasks
from tests.tolerance import assert_relative_close

ECHO = TaskSpec(  # the fake task of tests/fake_tasks/echo: upper-cases a text file, adds a seeded random number
    name="echo", title="Echo", description="test task", checkpoints=(),
    inputs=(Input("text", "file", "a text file"),),
    options=(Option("mode", "choice", "ok", "behaviour", choices=("ok", "cancel", "crash")), Option.seed(-1)),
    package="tests.fake_tasks.echo")
DANCE = {"working_size": 128, "frame_end": 2, "format": "png"}  # the tiny networks at their smallest


@pytest.fixture
def echo_engine(tmp_path: Path) -> Engine:
    return Engine(EngineConfig(device="cpu", outputs=tmp_path / "outputs", cache_dir=tmp_path / "hub", offline=True),
                  tasks={"echo": ECHO})


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "hello.txt").write_text("hello")
    (folder / "bye.txt").write_text("bye")
    return folder


def write_jobs(folder: Path, *lines: object) -> Path:
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def echo_job(job_id: str, text: object = "hello.txt", **options: object) -> dict:
    return {"id": job_id, "task": "echo", "inputs": {"text": text}, "options": {"seed": 7, **options}}


def run(engine: Engine, jobs: Path, out: Path, **kwargs: object) -> tuple[dict[str, batch.Outcome], int, str]:
    """Outcomes by line number ("1", "2", ...), the exit code and the progress lines."""
    stream = io.StringIO()
    outcomes, code = batch.run_batch(engine, jobs, out, reporter=batch.Reporter(stream), **kwargs)
    return {str(o.line): o for o in outcomes}, code, stream.getvalue()


def test_bad_lines_are_reported_and_the_rest_runs(echo_engine: Engine, work: Path, capsys) -> None:
    jobs = write_jobs(work, echo_job("a"), "not json", {"task": "nope"}, echo_job("b", mode="loud"),
                      echo_job("c", text="missing.txt"), {"task": "echo", "inputs": {"text": "bye.txt"}, "optoins": {}},
                      echo_job("a"), echo_job("crash", mode="crash"), "", echo_job("d", text="bye.txt"))
    out = work / "out"
    outcomes, code, progress = run(echo_engine, jobs, out)
    assert [(o.job, o.status) for o in outcomes.values()] == [
        ("a", "ok"), ("0002", "invalid"), ("0003", "invalid"), ("b", "invalid"), ("c", "invalid"),
        ("0006", "invalid"), ("a", "invalid"), ("crash", "failed"), ("d", "ok")]  # line 9 is empty
    errors = {line: o.error for line, o in outcomes.items()}
    assert errors["2"].startswith("line 2: not a JSON object")
    assert "line 3: unknown task 'nope'" in errors["3"]
    assert "line 4: Option mode must be one of ok, cancel, crash" in errors["4"]
    assert "line 5: input 'text'" in errors["5"] and "missing.txt does not exist" in errors["5"]
    assert "line 6: unknown key(s) optoins" in errors["6"]
    assert "line 7: the id 'a' is used by an earlier line" in errors["7"]
    assert outcomes["8"].kind == "RuntimeError" and "boom" in errors["8"]
    assert code == 1  # a failure that is not bad input
    assert (out / "a" / "result.txt").read_text().startswith("HELLO") and (out / "d" / "result.txt").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["a", "d", "summary.csv", "summary.json"]  # nothing half-written
    summary = json.loads((out / "summary.json").read_text())
    assert [row["job"] for row in summary["jobs"]] == ["a", "0002", "0003", "b", "c", "0006", "a", "crash", "d"]
    assert summary["counts"] == {"ok": 2, "invalid": 6, "failed": 1}
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert rows[0]["folder"] == str(out / "a") and rows[7]["status"] == "failed"
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["job", "task", "status", "seconds", "folder", "or", "error"]
    assert ["crash", "echo", "failed"] in [line.split()[:3] for line in table.splitlines()]
    assert str(out / "summary.json") in table
    assert "[a] echo: started (line 1)" in progress and "[a]  67% step 2" in progress and "[d] ok after" in progress


def test_only_bad_input_exits_with_the_input_error_code(echo_engine: Engine, work: Path) -> None:
    _, code, _ = run(echo_engine, write_jobs(work, echo_job("a"), "[1, 2]"), work / "out")
    assert code == 2
    _, code, _ = run(echo_engine, write_jobs(work, echo_job("a")), work / "out")
    assert code == 0


def test_a_second_run_resumes_without_redoing_finished_jobs(echo_engine: Engine, work: Path) -> None:
    jobs = write_jobs(work, echo_job("a"), echo_job("b", text="bye.txt"), echo_job("c", mode="crash"))
    out = work / "out"
    first, code, _ = run(echo_engine, jobs, out)
    assert [o.status for o in first.values()] == ["ok", "ok", "failed"] and code == 1
    written = {job: (out / job / "settings.json").stat().st_mtime_ns for job in ("a", "b")}
    shutil.rmtree(out / "b")  # as if it had never finished
    jobs = write_jobs(work, echo_job("a"), echo_job("b", text="bye.txt"), echo_job("c"))  # c fixed
    second, code, progress = run(echo_engine, jobs, out)
    assert [o.status for o in second.values()] == ["skipped", "ok", "ok"] and code == 0
    assert (out / "a" / "settings.json").stat().st_mtime_ns == written["a"]  # not run again
    assert (out / "b" / "settings.json").stat().st_mtime_ns != written["b"]
    assert "[a] echo: started" not in progress and "[a] skipped -> " in progress
    assert json.loads((out / "summary.json").read_text())["counts"] == {"skipped": 1, "ok": 2}


def test_with_two_devices_every_job_runs_once(work: Path, tmp_path: Path) -> None:
    engine = Engine(EngineConfig(device="cpu", devices=("cpu", "cpu"), outputs=tmp_path / "outputs",
                                 cache_dir=tmp_path / "hub", offline=True), tasks={"echo": ECHO})
    lines = [echo_job(f"job{i}", seed=i) for i in range(6)]
    outcomes, code, progress = run(engine, write_jobs(work, *lines), work / "out")
    assert code == 0 and [o.job for o in outcomes.values()] == [f"job{i}" for i in range(6)]
    assert all(progress.count(f"[job{i}] echo: started") == 1 for i in range(6))
    results = {(work / "out" / f"job{i}" / "result.txt").read_text() for i in range(6)}
    assert len(results) == 6  # each job with its own seed


def test_ctrl_c_cancels_the_running_job_and_leaves_no_partial_folder(echo_engine: Engine, work: Path) -> None:
    cancel = batch.CancelToken()

    class InterruptDuringB(batch.Reporter):
        def progress(self, job: batch.Job) -> batch.Progress:
            report = super().progress(job)

            def interrupt(fraction: float, message: str) -> None:
                report(fraction, message)
                if job.id == "b" and message == "step 0":
                    _thread.interrupt_main()  # Ctrl+C, seen by the main thread waiting for the jobs
                    deadline = time.monotonic() + 30
                    while not cancel.cancelled and time.monotonic() < deadline:
                        time.sleep(0.01)

            return interrupt

    jobs, _ = batch.plan(write_jobs(work, echo_job("a"), echo_job("b"), echo_job("c")), work / "out", {"echo": ECHO})
    outcomes, interrupted = batch.run_local(echo_engine, jobs, work / "out", InterruptDuringB(io.StringIO()), cancel)
    assert interrupted and [o.status for o in outcomes] == ["ok", "cancelled", "not run"]
    assert batch.exit_code(outcomes, interrupted) == 130
    assert sorted(p.name for p in (work / "out").iterdir()) == ["a"]  # no folder, no staging left by b


def test_an_earlier_runs_settings_json_as_a_line_repeats_it(echo_engine: Engine, work: Path, tmp_path: Path) -> None:
    earlier = echo_engine.run("echo", {"text": work / "hello.txt"}, {"seed": -1})  # a fresh seed, recorded
    line = json.dumps(json.loads(earlier.files["settings"].read_text()))  # what `jq -c . settings.json` gives
    assert json.loads(line)["inputs"]["text"]["sha256"]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(work / "hello.txt", inputs / "hello.txt")
    (work / "hello.txt").write_text("HELLO, changed")  # the JSONL's folder now holds another file of that name
    jobs = write_jobs(work, line)
    outcomes, code, _ = run(echo_engine, jobs, work / "out", inputs_dir=inputs)
    assert code == 0
    assert (work / "out" / "0001" / "result.txt").read_text() == earlier.files["result"].read_text()
    settings = json.loads((work / "out" / "0001" / "settings.json").read_text())
    assert settings["options"] == json.loads(line)["options"] and settings["inputs"] == json.loads(line)["inputs"]
    outcomes, code, _ = run(echo_engine, jobs, work / "out2")  # without --inputs: only the changed file is there
    assert code == 2 and "is not the file that was recorded" in outcomes["1"].error


def test_recorded_names_must_be_plain_file_names(echo_engine: Engine, work: Path) -> None:
    jobs = write_jobs(work, echo_job("a", text={"name": "../work/hello.txt"}), echo_job("b", text=["hello.txt"]),
                      echo_job("c", text={"name": "hello.txt"}))
    outcomes, code, _ = run(echo_engine, jobs, work / "out")
    assert "not a plain file name" in outcomes["1"].error and "takes one file, not a list" in outcomes["2"].error
    assert outcomes["3"].status == "ok" and code == 2


def test_inputs_resolve_to_paths_lists_and_json_content(work: Path) -> None:
    from engine.tasks import discover_tasks

    tasks = discover_tasks()
    (work / "traj.json").write_text("[[[1, 2], [3, 4]]]")
    dance = batch.resolve_inputs(tasks["dance"], {"sheets": "hello.txt", "masks": [], "poses": None}, [work])
    assert dance == {"sheets": [(work / "hello.txt").resolve()]}  # one file for a multiple input: a list of one
    given = {"image": {"name": "bye.txt"}, "trajectories": [[[1, 2], [3, 4]]]}
    motion = batch.resolve_inputs(tasks["motion"], given, [work])
    assert motion == {"image": (work / "bye.txt").resolve(), "trajectories": [[[1, 2], [3, 4]]]}
    assert batch.resolve_inputs(tasks["motion"], {"trajectories": "traj.json"}, [work]) == {
        "trajectories": (work / "traj.json").resolve()}
    with pytest.raises(InputError, match="the motion task has no input 'video'"):
        batch.resolve_inputs(tasks["motion"], {"video": "bye.txt"}, [work])


def test_a_summary_file_batch_did_not_write_is_never_replaced(echo_engine: Engine, work: Path) -> None:
    out = work / "out"
    out.mkdir()
    (out / "summary.json").write_text("my notes")
    with pytest.raises(InputError, match="not a batch summary"):
        run(echo_engine, write_jobs(work, echo_job("a")), out)
    assert (out / "summary.json").read_text() == "my notes" and not (out / "a").exists()


def test_ray_missing_is_an_input_error_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(InputError, match="pip install ray"):
        batch.import_ray()


# ------------------------------------------------------------------------------------------- a real task, CLI, Ray
def cli_args(*argv: str) -> argparse.Namespace:
    """The arguments as `python -m engine batch ...` parses them."""
    return build_parser(discover_tasks()).parse_args(["batch", *argv])


@pytest.fixture(scope="module")
def dance_jobs(tiny_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dance_jobs")
    sheets = next(tiny_hub.glob("spaces--nev--CoNR/snapshots/*")) / "character_sheet_ponytail_example"
    for sheet in sorted(sheets.glob("*.png"))[:2]:
        shutil.copy(sheet, folder / f"view{sheet.name}")
    return write_jobs(folder, {"id": "two-views", "task": "dance", "inputs": {"sheets": ["view0.png", "view1.png"]},
                               "options": DANCE},
                      {"task": "dance", "inputs": {"sheets": ["view0.png"]}, "options": {"working_size": 100}})


def dance_frames(folder: Path) -> list[np.ndarray]:
    return [media.read_image(p) for p in sorted((folder / "frames").glob("*.png"))]


def test_dance_jobs_through_the_command(tiny_hub: Path, dance_jobs: Path, tmp_path: Path, capsys) -> None:
    args = cli_args(str(dance_jobs), "--out", str(tmp_path / "out"), "--cache-dir", str(tiny_hub), "--offline",
                    "--device", "cpu")
    assert batch.run_command(args, batch.Reporter(io.StringIO())) == 2  # the second line's option is bad
    frames = dance_frames(tmp_path / "out" / "two-views")
    assert len(frames) == 2 and frames[0].shape[-1] == 4
    assert "working_size must be one of" in capsys.readouterr().out
    argv = ["batch", str(dance_jobs), "--out", str(tmp_path / "out"), "--cache-dir", str(tiny_hub), "--offline"]
    assert main(argv) == 2  # the command itself, resumed: nothing to run
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["counts"] == {"skipped": 1, "invalid": 1}


def test_dance_jobs_on_a_local_ray_instance(tiny_hub: Path, dance_jobs: Path, tmp_path: Path) -> None:
    import ray  # requirements-test.txt installs it

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        stream = io.StringIO()
        args = cli_args(str(dance_jobs), "--out", str(tmp_path / "ray"), "--cache-dir", str(tiny_hub), "--offline",
                        "--device", "cpu", "--ray", "auto")
        assert batch.run_command(args, batch.Reporter(stream)) == 2
    finally:
        ray.shutdown()
    assert "with {'num_cpus': 1} each" in stream.getvalue()
    local = cli_args(str(dance_jobs), "--out", str(tmp_path / "local"), "--cache-dir", str(tiny_hub), "--offline",
                     "--device", "cpu")
    assert batch.run_command(local, batch.Reporter(io.StringIO())) == 2
    on_ray, here = (dance_frames(tmp_path / where / "two-views") for where in ("ray", "local"))
    assert len(on_ray) == len(here) == 2
    assert_relative_close(on_ray, here, rtol=2 / 255)  # 8-bit frames: at most a rounding step (1 CPU thread in Ray)
