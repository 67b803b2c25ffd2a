"""Start the web app: `python app.py [--host --port --share --auth USER:PASS --device --dtype --offload ...]`.

Every flag also reads an environment variable (ANIMATE_HOST, ANIMATE_PORT, ANIMATE_SHARE, ANIMATE_AUTH, ...), which is
how a Hugging Face Space configures it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if os.environ.get("SPACES_ZERO_GPU"):
    import spaces  # noqa: F401  (ZeroGPU needs it imported before anything touches CUDA)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

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
    add_engine_arguments(parser)
    args = parser.parse_args(argv)
    if args.auth and ":" not in args.auth:
        parser.error("--auth must look like USER:PASS")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from engine import Engine
    from tabs import THEME, build_app

    engine = Engine(config_from_args(args, outputs=args.outputs))
    demo = build_app(engine)
    if args.share and not args.auth:
        print("warning: --share makes the app public; protect it with --auth USER:PASS", file=sys.stderr)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                auth=tuple(args.auth.split(":", 1)) if args.auth else None, max_file_size=args.max_file_size,
                allowed_paths=[str(args.outputs.resolve())], theme=THEME, pwa=True)


if __name__ == "__main__":
    main()
