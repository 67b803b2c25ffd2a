"""Command line: `python -m engine list | download TASK | bench TASK | watermark FILE... |
<task> --<input> PATH ... --out DIR`.

Task subcommands are generated from the same TaskSpec (inputs + options) the tabs use. Exit codes: 0 ok, 1 unexpected,
2 bad input, 3 checkpoint problem, 4 out of memory/disk, 130 cancelled. Errors print one line on stderr.

A windowed task (pose, face) given `--devices A,B` or started by `torchrun --nproc-per-node N` runs once per device
with each denoising step's windows divided among them (engine.distributed); rank 0 alone writes --out and reports.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from engine import Engine, batch, distributed, user_message
from engine.errors import InputError, exit_code_of
from engine.hub import human_size
from engine.jobs import pick_seed, stop_on_sigterm
from engine.limits import applied
from engine.outputs import sweep_staging
from engine.settings import add_engine_arguments, config_from_args
from engine.tasks import Option, TaskSpec, discover_tasks



def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    kwargs: dict[str, Any] = {"dest": option.name, "default": None,
                              "help": f"{option.help} (default: {option.default})"}
    if option.kind == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = {"int": int, "float": float}.get(option.kind, str)
        if option.choices:
            kwargs["choices"] = option.choices
    parser.add_argument(option.flag, **kwargs)


def _add_task_parser(sub: Any, spec: TaskSpec, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(spec.name, help=spec.title, description=spec.description, parents=[common])
    for item in spec.inputs:
        parser.add_argument(item.flag, dest=f"input_{item.name}", type=Path, required=item.required,
                            action="append" if item.multiple else "store",
                            help=item.help + (" (repeat for several)" if item.multiple else ""))
    for option in spec.options:
        _add_option(parser, option)
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder for the result files and settings.json")
    parser.set_defaults(command="task", task=spec.name)


def build_parser(tasks: dict[str, TaskSpec]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Animate still images from the command line.")
    common = argparse.ArgumentParser(add_help=False)
    add_engine_arguments(common)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="tasks, their checkpoints, cached or not, sizes", parents=[common]).add_argument(
        "--json", action="store_true", help="machine-readable output")
    download = sub.add_parser("download", help="fetch a task's checkpoints ahead of time", parents=[common])
    download.add_argument("task", choices=sorted(tasks))
    download.add_argument("--dry-run", action="store_true", help="print what would download and how much; fetch nothing")
    download.add_argument("--examples", action="store_true",
                          help="also fetch the models' published demo inputs the tab offers as examples (if any)")
    bench = sub.add_parser("bench", help="time a task's full-size models with random weights (no download)",
                           parents=[common])
    bench.add_argument("task", choices=sorted(tasks))
    bench.add_argument("--size", choices=["full", "tiny"], default="full")
    bench.add_argument("--frames", type=int, help="frames to time (task default if omitted; e.g. 16 or 64 for pose)")
    bench.add_argument("--steps", type=int, help="denoising steps (pose: steps timed, default 2; motion: steps of "
                                                 "the video, default 25); a full-size step on CPU takes minutes")
    bench.add_argument("--set", dest="settings", action="append", default=[], type=_bench_setting,
                       metavar="KEY=VALUE", help="another setting of the task's benchmark, e.g. --set sheets=2 for "
                                                 "dance (repeat for several; --sheets 2 works too)")
    check = sub.add_parser("watermark", help="say whether pictures or videos carry the invisible watermark of SV3D "
                                             "outputs (a video: a few frames)", parents=[common])
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="PNG, JPEG, WebP, BMP, or a video")
    batch.add_parser(sub, common)
    for spec in tasks.values():
        _add_task_parser(sub, spec, common)
    return parser


def _bench_setting(text: str) -> tuple[str, int | float | str]:
    """KEY=VALUE -> (key, value as an int, else a float, else the text)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for kind in (int, float):
        try:
            return key.replace("-", "_"), kind(value)
        except ValueError:
            pass
    return key.replace("-", "_"), value


def _bench_flags(parser: argparse.ArgumentParser, extra: list[str]) -> list[tuple[str, int | float | str]]:
    """A bench's other settings may also be given as flags: `--driver audio` is `--set driver=audio`."""
    settings = []
    for i in range(0, len(extra), 2):
        flag, value = extra[i], extra[i + 1] if i + 1 < len(extra) else None
        if not flag.startswith("--") or value is None or value.startswith("--"):
            parser.error(f"bench: expected --KEY VALUE pairs for the task's settings, got {' '.join(extra)}")
        settings.append(_bench_setting(f"{flag[2:]}={value}"))
    return settings


def _cli_progress() -> tuple[Callable[[float, str], None], Callable[[], None]]:
    """A tqdm bar on stderr, created on the first report (so an early error prints nothing else)."""
    from tqdm import tqdm

    bars: list[tqdm] = []

    def update(fraction: float, message: str) -> None:
        if not bars:
            bars.append(tqdm(total=1000, bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]",
                             file=sys.stderr, dynamic_ncols=True))
        bars[0].set_description_str(message[:60])
        bars[0].update(max(0, int(fraction * 1000) - bars[0].n))

    def close() -> None:
        for bar in bars:
            bar.close()

    return update, close


def cmd_list(engine: Engine, as_json: bool) -> None:
    rows = engine.checkpoint_rows()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for task in engine.tasks.values():
        task_rows = [r for r in rows if r["task"] == task.name]
        total = sum(r["size_mb"] for r in task_rows) * 2**20
        print(f"{task.name}: {task.title} (about {human_size(total)})")
        for r in task_rows:
            state = "cached" if r["cached"] else "not cached"
            extra = " [gated: accept licence + HF_TOKEN]" if r["gated"] else ""
            extra += " [optional]" if r["optional"] else ""
            print(f"  {r['checkpoint']:<12} {r['repo']} @ {r['revision'][:12]}  ~{r['size']}  {state}{extra}")
            if r["path"]:
                print(f"  {'':<12} {r['path']}")


def cmd_download(engine: Engine, task: str, dry_run: bool, examples: bool = False) -> None:
    spec = engine.task(task)
    names = [*spec.all_checkpoints, *(engine.example_checkpoints(task) if examples else [])]
    if dry_run:
        total = 0
        for name in names:
            ck = engine.hub.spec(name)
            status = engine.hub.status(name)
            if status.cached:
                print(f"{name}: {ck.repo} is already cached at {status.path}")
                continue
            need, files = engine.hub.plan(name)
            total += need
            print(f"{name}: {ck.repo} @ {ck.revision}: {human_size(need)} to download")
            for filename, size, will in files:
                print(f"  {'download' if will else 'cached  '} {human_size(size):>9}  {filename}")
        print(f"total to download: {human_size(total)}")
        return
    progress, close = _cli_progress()
    try:
        paths = engine.download(task, progress, examples=examples)
    finally:
        close()
    for name, path in paths.items():
        print(f"{name}: {path}")


def cmd_watermark(engine: Engine, files: Sequence[Path]) -> int:
    """One line per file: matching bits of 48 and the original detector's verdict. A file that cannot be read gets
    its reason on stderr, the others are still checked, and the exit code is then the bad-input one."""
    from engine.watermark import check_file

    unreadable = 0
    with applied(engine.config.limits):
        for path in files:
            try:
                print(f"{path}: {check_file(path).summary()}")
            except InputError as exc:
                print(f"error: {exc}", file=sys.stderr)
                unreadable += 1
    return exit_code_of(InputError) if unreadable else 0


def cmd_task(engine: Engine, spec: TaskSpec, args: argparse.Namespace, report: bool = True) -> None:
    """Run one job into --out; `report`: show progress, warnings and the files written (False: silent)."""
    inputs = {item.name: getattr(args, f"input_{item.name}") for item in spec.inputs
              if getattr(args, f"input_{item.name}") is not None}
    options = {o.name: getattr(args, o.name) for o in spec.options if getattr(args, o.name) is not None}
    sweep_staging(args.out.resolve().parent)  # staging folders of killed runs sit beside --out
    progress, close = _cli_progress() if report else (lambda fraction, message: None, lambda: None)
    try:
        result = engine.run(spec.name, inputs, options, progress=progress, out_dir=args.out.resolve())
    finally:
        close()
    if not report:
        return
    for warning in result.settings.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    for name, path in result.files.items():
        print(f"{name}: {path}")


def split_task(place: distributed.Rank, args: argparse.Namespace) -> None:
    """One rank of a job divided among devices (in a spawned worker or under torchrun), inside the process group.

    Every rank runs the whole job with rank 0's seed (a random one is drawn once); rank 0 writes --out and reports,
    the others run silently into a temporary folder of their own that is removed afterwards."""
    args = argparse.Namespace(**vars(args))
    args.device, args.devices = place.device.type, ()
    if (getattr(args, "seed", None) or 0) < 0:  # -1: one random seed for all; omitted: all take the default
        args.seed = distributed.agree(pick_seed(args.seed))
    config = config_from_args(args)
    if place.rank == 0:
        engine = Engine(config)
        cmd_task(engine, engine.task(args.task), args)
        return
    with tempfile.TemporaryDirectory(prefix=f"engine-rank{place.rank}-") as scratch:
        args.out = Path(scratch) / "out"
        engine = Engine(replace(config, outputs=Path(scratch) / "outputs", outputs_quota_gb=None))
        cmd_task(engine, engine.task(args.task), args, report=False)


def explain(exc: BaseException) -> tuple[int, str]:
    """-> (exit code, one-line message) for any failure, as the CLI reports it."""
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    return exit_code_of(type(exc)), user_message(exc)


def split_bench(place: distributed.Rank, args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """One rank of a benchmark whose denoising steps are divided among devices; rank 0 prints the report (its
    timings include waiting for the other ranks at every step's reduction)."""
    engine = Engine(config_from_args(argparse.Namespace(**{**vars(args), "device": place.device.type,
                                                          "devices": ()})))
    report = engine.bench(args.task, device=place.device.type, size=args.size, **settings)
    if place.rank == 0:
        print(json.dumps({**report, "devices": list(args.devices)}, indent=2))


def cmd_split_bench(engine: Engine, args: argparse.Namespace, settings: dict[str, Any]) -> None:
    distributed.check_task(engine.tasks, args.task)
    devices = distributed.check_devices(args.devices)
    cli = importlib.import_module("engine.__main__")  # see cmd_split_task
    distributed.launch(devices, cli.split_bench, (args, settings), cli.explain)


def cmd_split_task(engine: Engine, args: argparse.Namespace) -> None:
    """A task given several --devices: one spawned worker per device (see engine.distributed)."""
    distributed.check_task(engine.tasks, args.task)
    devices = distributed.check_devices(args.devices)
    # Workers unpickle the functions by module name; under `python -m engine` this module is `__main__`, which a
    # spawned worker does not re-run for a package, so they are handed over as attributes of engine.__main__.
    cli = importlib.import_module("engine.__main__")
    distributed.launch(devices, cli.split_task, (args,), cli.explain)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(discover_tasks())
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.settings += _bench_flags(parser, extra)
    stop_on_sigterm()
    try:
        if args.command == "batch":
            return batch.run_command(args)
        engine = Engine(config_from_args(args))
        if args.command == "list":
            cmd_list(engine, args.json)
        elif args.command == "download":
            cmd_download(engine, args.task, args.dry_run, args.examples)
        elif args.command == "bench":
            settings = {name: getattr(args, name) for name in ("frames", "steps") if getattr(args, name) is not None}
            settings.update(args.settings)
            if len(args.devices) > 1:
                cmd_split_bench(engine, args, settings)
            else:
                print(json.dumps(engine.bench(args.task, device=args.device, size=args.size, **settings), indent=2))
        elif args.command == "watermark":
            return cmd_watermark(engine, args.files)
        elif distributed.torchrun_world() > 1:
            distributed.check_task(engine.tasks, args.task)
            try:
                split_task(distributed.from_torchrun(args.devices, args.device), args)
            finally:
                distributed.close_group()
        elif len(args.devices) > 1:
            cmd_split_task(engine, args)
        else:
            if args.devices:  # one device named with --devices, e.g. cuda:1
                args.device = distributed.engine_device(distributed.check_devices(args.devices)[0])
                engine = Engine(config_from_args(args))
            cmd_task(engine, engine.task(args.task), args)
    except distributed.WorkerFailed as failure:  # the worker's own one line and code
        print(f"error: {failure}", file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; the code says what kind
        code, message = explain(exc)
        print(f"error: {message}", file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
