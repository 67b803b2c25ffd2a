"""Engine flags shared by app.py and the CLI. Every flag also reads an environment variable (for Spaces)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine import EngineConfig

ENV_PREFIX = "ANIMATE_"


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def env_flag(name: str) -> bool:
    return (env(name, "") or "").lower() in ("1", "true", "yes", "on")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine (each also settable as ANIMATE_<NAME>, e.g. ANIMATE_DEVICE=cpu)")
    group.add_argument("--device", default=env("device", "auto"), choices=["auto", "cuda", "mps", "cpu"],
                       help="where models run (default: auto = CUDA, then MPS, then CPU)")
    group.add_argument("--dtype", default=env("dtype", "auto"), choices=["auto", "bf16", "fp16", "fp32"],
                       help="weights/activations precision (auto: bf16 on recent CUDA GPUs else fp16; fp32 on CPU)")
    group.add_argument("--offload", default=env("offload", "none"), choices=["none", "model"],
                       help="keep models in CPU memory and move them to the GPU only while used (saves GPU memory)")
    group.add_argument("--cache-dir", default=env("cache_dir"), type=Path,
                       help="Hugging Face Hub cache folder for checkpoints (default: HF_HUB_CACHE or ~/.cache/huggingface/hub)")
    group.add_argument("--offline", action="store_true", default=env_flag("offline"),
                       help="never contact the Hub; use cached checkpoints only")
    group.add_argument("--memory-budget-gb", type=float, default=float(env("memory_budget_gb") or 0) or None,
                       help="memory the model cache may use before evicting least-recently-used models "
                            "(default: 85%% of GPU memory, or 60%% of free RAM on CPU)")


def config_from_args(args: argparse.Namespace, outputs: Path | None = None) -> EngineConfig:
    return EngineConfig(device=args.device, dtype=args.dtype, offload=args.offload,
                        outputs=outputs or Path(getattr(args, "outputs", None) or env("outputs", "outputs")),
                        cache_dir=args.cache_dir, offline=args.offline, memory_budget_gb=args.memory_budget_gb)
