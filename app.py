"""Start the web app: `python app.py [--host --port --share --auth USER:PASS --device --devices --dtype --offload ...]`.

With `--devices cuda:0,cuda:1,...` the app runs one job per device at a time, each device with its own model cache.

Every flag also reads an environment variable (ANIMATE_HOST, ANIMATE_PORT, ANIMATE_SHARE, ANIMATE_AUTH, ...), which is
how a Hugging Face Space configures it.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

if os.environ.get("SPACES_ZERO_GPU"):
    import spaces  # noqa: F401  (ZeroGPU needs it imported before anything touches CUDA)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from engine.jobs import stop_on_sigterm  # noqa: E402
from engine.settings import add_engine_arguments, config_from_args, env, env_flag  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Animate still images in your browser.")
    parser.add_argument("--host", default=env("host", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 to reach it from other machines; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(env("port") or os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default 7860)")
    parser.add_argument("--share", action="store_true", default=env_flag("share"),
                        help="create a public gradio.live link (use --auth with it)")
    parser.add_argument("--auth", default=env("auth"), metavar="USER:PASS",
                        help="require this login (recommended with --share)")
    parser.add_argument("--outputs", type=Path, default=Path(env("outputs", "outputs")),
                        help="folder where every run writes its results (default ./outputs)")
    parser.add_argument("--max-file-size", default=env("max_file_size", "200mb"),
                        help="largest upload accepted, e.g. 200mb or 1gb (default 200mb)")
    parser.add_argument("--upload-retention-hours", type=float, default=float(env("upload_retention_hours") or 24),
                        help="delete uploads and result copies the app serves once they are this old (default 24)")
    add_engine_arguments(parser)
    args = parser.parse_args(argv)
    if args.auth and ":" not in args.auth:
        parser.error("--auth must look like USER:PASS")
    if args.upload_retention_hours <= 0:
        parser.error("--upload-retention-hours must be more than 0")
    return args


def delete_cache(retention_hours: float) -> tuple[int, int]:
    """Gradio's delete_cache (every, older than) in seconds: look at most hourly for files older than the retention."""
    age = max(1, round(retention_hours * 3600))
    return min(3600, age), age


def instance_temp_dir(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Give this app instance its own Gradio temp folder (unless GRADIO_TEMP_DIR is set), removed at exit: with the
    shared default, stopping one instance deletes the uploads of another on the same host. Call before Gradio
    handles any file."""
    if environ.get("GRADIO_TEMP_DIR"):
        return None
    folder = Path(tempfile.mkdtemp(prefix="animate-studio-"))
    environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def stop_running_jobs(engine: Any, wait_s: float = 30.0) -> None:
    """Cancel running jobs when the server stops and give them a moment to discard their staging folders (what a
    job cannot finish in time, the next start sweeps)."""
    deadline = time.monotonic() + wait_s
    while engine.cancel_all() and time.monotonic() < deadline:
        time.sleep(0.2)


def configure_logging() -> None:
    """Console: the app's own messages (one line per user error, a traceback only for a bug), libraries' warnings."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("engine", "tabs"):
        logging.getLogger(name).setLevel(logging.INFO)


def announce(url: str, share_url: str | None, share: bool) -> None:
    """Where the app listens (Gradio's own banner is off: its hint names launch(share=True), not this app's flag)."""
    print(f"Animate Studio is running at {url}")
    if share_url:
        print(f"Public link: {share_url}")
    elif not share:
        print("To reach it from another machine use --host 0.0.0.0, or --share (with --auth) for a public link.")


def make_engine(args: argparse.Namespace) -> Any:
    """The engine for these flags; a device of --devices that is not there ends the app at once, with exit code 2
    like any other bad flag."""
    from engine import Engine
    from engine.errors import InputError

    try:
        return Engine(config_from_args(args, outputs=args.outputs))
    except InputError as exc:
        print(f"app.py: error: {exc}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging()
    engine = make_engine(args)
    instance_temp_dir()
    stop_on_sigterm()  # a stop (docker stop, systemd, Spaces) shuts down like Ctrl+C
    from engine.examples import ASSETS
    from tabs import CSS, THEME, build_app

    demo = build_app(engine, delete_cache=delete_cache(args.upload_retention_hours))
    if args.share and not args.auth:
        print("warning: --share makes the app public; protect it with --auth USER:PASS", file=sys.stderr)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                    auth=tuple(args.auth.split(":", 1)) if args.auth else None, max_file_size=args.max_file_size,
                    allowed_paths=[str(args.outputs.resolve()), str(ASSETS)], theme=THEME, css=CSS, pwa=True,
                    quiet=True, prevent_thread_lock=True)
        announce(demo.local_url, demo.share_url, args.share)
        demo.block_thread()
    except KeyboardInterrupt:  # stopped while starting (once started, block_thread handles it and returns)
        demo.close()
    finally:
        stop_running_jobs(engine)


if __name__ == "__main__":
    main()
