"""`python -m engine.testing DIR [--task dance ...]`: write the tiny Hub cache, then run the app on it."""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.testing import build_tiny_hub


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.testing",
                                     description="Write a Hub cache of tiny random models in the published layouts.")
    parser.add_argument("cache_dir", type=Path, help="folder to write the Hub cache into")
    parser.add_argument("--task", action="append", help="only these tasks (repeat); default: all")
    args = parser.parse_args()
    build_tiny_hub(args.cache_dir, args.task)
    print(f"Tiny Hub cache written to {args.cache_dir}. Run: python app.py --cache-dir {args.cache_dir} --offline")


main()
