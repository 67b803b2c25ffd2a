"""Speed/memory benchmark of the face pipeline with random weights (no download needed): a whole video from landmarks,
pose images and motion field to decoded frames, at 512x512 (full) or 64x64 (tiny). `--set frames=100` measures
periodic sampling (100 frames = 8 windows of 25 per step). `--set driver=audio` times the speech renderer instead
(AniPortrait: wav2vec2-base + Audio2Mesh, Audio2Pose in 5 s chunks, projection) on `--set seconds=N` of audio: the
time per second of audio, by stage."""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from engine.bench import Harness, Measurements
from engine.errors import InputError
from engine.models.mofa.landmark_controlnet import LandmarkControlNet
from engine.pipelines.motion.bench import random_mofa_networks
from engine.pipelines.motion.tiny import TINY_UNET
from .aniportrait import Audio2MeshModel, Audio2PoseModel
from .geometry import FaceGeometry
from .pipeline import FacePipeline
from .speech import SpeechRenderer
from .speech import frame_count as speech_frames
from .spec import SPEC
from .tiny import PREPROCESSOR, TINY_LATENT, TINY_MATTING, TINY_WAV2VEC, synthetic_landmarks
from .windows import periodic_windows

SETTINGS = {"frames": 25, "steps": 25,  # one 25-frame video as the app makes it by default
            "driver": "landmarks", "seconds": 10.0}  # driver "audio": the speech renderer on 10 s of audio


def build_random_pipeline(harness: Harness, size: str) -> FacePipeline:
    full = size == "full"
    controlnet = {} if full else {**{k: v for k, v in TINY_UNET.items() if k != "num_frames"}, **TINY_MATTING}
    pipeline = FacePipeline(**random_mofa_networks(harness, full),
                            controlnet=harness.network(lambda: LandmarkControlNet(**controlnet)),
                            device=harness.device, dtype=harness.dtype)
    return pipeline.with_offload(harness.offload)


def random_speech_renderer(harness: Harness, size: str) -> SpeechRenderer:
    """AniPortrait's networks with random weights: wav2vec2-base (full) or the tests' tiny one, latent 512 or 16."""
    full = size == "full"
    config = Wav2Vec2Config() if full else Wav2Vec2Config(**TINY_WAV2VEC)  # Wav2Vec2Config's defaults: wav2vec2-base
    latent = 512 if full else TINY_LATENT

    def build(kind: type) -> nn.Module:
        return harness.network(lambda: kind(Wav2Vec2Model(config), latent_dim=latent,
                                            out_dim=6 if kind is Audio2PoseModel else 1404), dtype=torch.float32)

    extractor = Wav2Vec2FeatureExtractor(**{k: v for k, v in PREPROCESSOR.items() if k != "feature_extractor_type"})
    return SpeechRenderer(build(Audio2MeshModel), build(Audio2PoseModel), extractor, harness.device)


def bench_speech(harness: Harness, size: str, seconds: float) -> Measurements:
    """Audio -> landmarks for `seconds` of audio: total and per second of audio, and each stage's share."""
    renderer = random_speech_renderer(harness, size)
    samples = (np.random.default_rng(0).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
    transform = np.eye(4)
    transform[2, 3] = -40  # the face 40 cm before the camera
    geometry = FaceGeometry(np.random.default_rng(1).normal(0, 4, (468, 3)), transform)
    portrait = np.full((478, 2), 256.0)
    stamps, stamp = harness.stamper()
    harness.reset_peak()
    with harness.timer("audio_to_landmarks"):
        start = time.perf_counter()
        renderer(samples, portrait, geometry, 512, 512, progress=stamp)
        harness.synchronize()
        end = time.perf_counter()
    mesh_s = stamps[1][1] - stamps[0][1] if len(stamps) > 1 else end - start
    return {"audio_seconds": seconds, "frames": speech_frames(len(samples)), "total_s": round(end - start, 3),
            "s_per_audio_second": round((end - start) / seconds, 3), "audio2mesh_s": round(mesh_s, 3),
            "audio2pose_s": round(end - stamps[1][1], 3) if len(stamps) > 1 else None}


def bench(harness: Harness, size: str, frames: int, steps: int, driver: str, seconds: float) -> Measurements:
    """Time one video ("video") and, from the progress reports, the seconds per denoising step (all windows); or,
    with driver "audio", the speech renderer."""
    if driver == "audio":
        return bench_speech(harness, size, seconds)
    if driver != "landmarks":
        raise InputError(f"The face benchmark's --set driver= is 'landmarks' (the diffusion) or 'audio' (the "
                         f"speech renderer); got '{driver}'.")
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
    return {"resolution": side, "frames": frames, "windows_per_step": len(periodic_windows(frames)),
            "s_per_step": round(per_step, 4), "motion_field_s": round(stamps[0] - start, 4)}
