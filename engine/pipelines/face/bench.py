"""Speed/memory benchmark of the face pipeline with random weights (no download needed): a whole video from landmarks,
pose images and motion field to decoded frames, at 512x512 (full) or 64x64 (tiny). `--set frames=100` measures
periodic sampling (100 frames = 8 windows of 25 per step)."""
from __future__ import annotations

import time

import numpy as np

from engine.bench import Harness, Measurements
from engine.models.mofa.landmark_controlnet import LandmarkControlNet
from engine.pipelines.motion.bench import random_mofa_networks
from engine.pipelines.motion.tiny import TINY_UNET
from .pipeline import FacePipeline
from .spec import SPEC
from .tiny import TINY_MATTING, synthetic_landmarks
from .windows import periodic_windows

SETTINGS = {"frames": 25, "steps": 25}  # one 25-frame video as the app makes it by default


def build_random_pipeline(harness: Harness, size: str) -> FacePipeline:
    full = size == "full"
    controlnet = {} if full else {**{k: v for k, v in TINY_UNET.items() if k != "num_frames"}, **TINY_MATTING}
    pipeline = FacePipeline(**random_mofa_networks(harness, full),
                            controlnet=harness.network(lambda: LandmarkControlNet(**controlnet)),
                            device=harness.device, dtype=harness.dtype)
    return pipeline.with_offload(harness.offload)


def bench(harness: Harness, size: str, frames: int, steps: int) -> Measurements:
    """Time one video ("video") and, from the progress reports, the seconds per denoising step (all windows)."""
    pipeline = build_random_pipeline(harness, size)
    side = 512 if size == "full" else 64
    image = (np.random.RandomState(0).rand(side, side, 3) * 255).astype(np.uint8)
    inputs = {"image": image, "landmarks": synthetic_landmarks(frames, side, side)}
    options = SPEC.parse_options({"steps": steps, "size": side})
    stamps: list[float] = []

    def stamp_steps(fraction: float, message: str) -> None:
        if message.startswith(("Motion field ready", "Denoising step")):
            harness.synchronize()
            stamps.append(time.perf_counter())

    harness.reset_peak()
    with harness.timer("video"):
        start = time.perf_counter()
        pipeline(inputs, options, progress=stamp_steps)
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else stamps[0] - start
    return {"resolution": side, "frames": frames, "windows_per_step": len(periodic_windows(frames)), "s_per_step": round(per_step, 4),
            "motion_field_s": round(stamps[0] - start, 4)}
