"""Engine flags shared by app.py and the CLI. Every flag also reads an environment variable (for Spaces)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine import EngineConfig
from engine.limits import Limits

ENV_PREFIX = "ANIMATE_"


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def env_flag(name: str) -> bool:
    return (env(name, "") or "").lower() in ("1", "true", "yes", "on")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine (each also settable as ANIMATE_<NAME>, e.g. ANIMATE_DEVICE=cpu)")
    group.add_argument("--device", default=env("device", "auto"), choices=["auto", "cuda", "mps", "cpu"],
                       help="where models run (default: auto = CUDA, then MPS, then CPU)")
    group.add_argument("--devices", type=parse_devices, default=parse_devices(env("devices", "")),
                       metavar="DEV,DEV,...",
                       help="several devices, e.g. cuda:0,cuda:1: the app runs one job per device at a time; a "
                            "command-line job (pose, face) divides each denoising step's windows among them "
                            "(default: the one --device)")
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
    group.add_argument("--outputs-quota-gb", type=float, default=float(env("outputs_quota_gb") or 0) or None,
                       help="after each run, delete the oldest finished run folders until all runs fit in this "
                            "size (never the new run or a running one; default: no quota)")
    add_limit_arguments(parser)


def parse_devices(text: str) -> tuple[str, ...]:
    """"cuda:0, cuda:1" -> ("cuda:0", "cuda:1"); "" -> () (one device, --device). A device may repeat (two CPU
    workers); whether each exists is checked when the engine starts."""
    return tuple(part.strip().lower() for part in (text or "").split(",") if part.strip())


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    group = parser.add_argument_group("limits on what one upload or run may cost (each also ANIMATE_<NAME>)")
    group.add_argument("--max-image-megapixels", type=float,
                       default=float(env("max_image_megapixels") or defaults.max_image_pixels / 1e6),
                       help="largest picture accepted, read from its header before decoding (default %(default)g)")
    group.add_argument("--max-video-frames", type=int,
                       default=int(env("max_video_frames") or defaults.max_video_frames),
                       help="most frames decoded from one video, after fps resampling (default %(default)d)")
    group.add_argument("--max-archive-mb", type=float,
                       default=float(env("max_archive_mb") or defaults.max_archive_bytes / 2**20),
                       help="most uncompressed data read from one zip, all its files together (default %(default)g)")


def limits_from_args(args: argparse.Namespace) -> Limits:
    return Limits(max_image_pixels=int(args.max_image_megapixels * 1e6), max_video_frames=args.max_video_frames,
                  max_archive_bytes=int(args.max_archive_mb * 2**20))


def config_from_args(args: argparse.Namespace, outputs: Path | None = None) -> EngineConfig:
    return EngineConfig(device=args.device, devices=args.devices, dtype=args.dtype, offload=args.offload,
                        outputs=outputs or Path(getattr(args, "outputs", None) or env("outputs", "outputs")),
                        cache_dir=args.cache_dir, offline=args.offline, memory_budget_gb=args.memory_budget_gb,
                        outputs_quota_gb=args.outputs_quota_gb,
                        limits=limits_from_args(args))
