"""Speed and memory of MagicAnimate's denoising step, with random weights (nothing is downloaded).

"full" builds the published architectures (UNet3D, appearance encoder, DensePose ControlNet, SD VAE) at 512x512;
"tiny" builds the test-size models at 64x64. The step timed is the pipeline's own code path (appearance encoder +
per-frame ControlNet + all windows through the UNet3D with CFG), with the task's default windows and guidance.
"""
from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

from engine.bench import Harness, Measurements
from engine.errors import InputError
from engine.pipelines.base import CancelToken, no_progress
from engine.pipelines.pose.appearance import AppearanceEncoder, prune
from engine.pipelines.pose.context import padded_length, window_schedule
from engine.pipelines.pose.pipeline import PosePipeline, make_scheduler
from engine.pipelines.pose.spec import SPEC
from engine.pipelines.pose.tiny import TINY_CONTROLNET, TINY_UNET, TINY_VAE
from engine.pipelines.pose.unet3d import UNet3DConditionModel, UNet3DConfig

SETTINGS = {"frames": 16, "steps": 2}  # frames timed (16 = one window), denoising steps timed
SD_VAE = {"block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
          "up_block_types": ["UpDecoderBlock2D"] * 4, "latent_channels": 4, "layers_per_block": 2,
          "norm_num_groups": 32, "sample_size": 512}
SD_UNET = {"cross_attention_dim": 768}  # every other SD1.5 UNet setting is the diffusers default
DEFAULTS = SPEC.parse_options()  # the task's defaults: 25 steps, 16-frame windows overlapping by 4, guidance 7.5


def _models(size: str) -> tuple[UNet3DConfig, dict[str, Any], dict[str, Any], dict[str, Any], int, int]:
    """(UNet3D config, UNet2D config, ControlNet config, VAE config, image size, text width)."""
    if size == "full":
        return UNet3DConfig(), SD_UNET, SD_UNET, SD_VAE, 512, 768
    unet = {k: v for k, v in TINY_UNET.items() if not k.startswith("_")}
    return UNet3DConfig.from_sd_config(TINY_UNET), unet, TINY_CONTROLNET, TINY_VAE, 64, TINY_UNET["cross_attention_dim"]


def build_random_pipeline(harness: Harness, size: str) -> tuple[PosePipeline, int, int]:
    """(a PosePipeline with random weights, image size, text width). No tokenizer or text encoder: the bench
    feeds a text embedding."""
    unet3d, unet, controlnet, vae, image, text_width = _models(size)
    pipe = PosePipeline(tokenizer=None, text_encoder=None,  # type: ignore[arg-type]
                        vae=harness.network(lambda: AutoencoderKL(**vae)),
                        controlnet=harness.network(lambda: ControlNetModel(**controlnet)),
                        appearance=harness.network(lambda: AppearanceEncoder(prune(UNet2DConditionModel(**unet)))),
                        unet=harness.network(lambda: UNet3DConditionModel(unet3d)),
                        device=harness.device, dtype=harness.dtype)
    return pipe.with_offload(harness.offload), image, text_width


@torch.no_grad()
def bench(harness: Harness, size: str, frames: int, steps: int) -> Measurements:
    """Time `steps` denoising steps over `frames` frames and the VAE decode of those frames.

    On CUDA one untimed warm-up step comes first (kernel selection); on CPU, where a full-size step takes
    minutes, it is left out."""
    if frames < 1 or steps < 1:
        raise InputError("The pose benchmark needs at least one frame and one step.")
    pipe, image, text_width = build_random_pipeline(harness, size)
    device, dtype = harness.device, harness.dtype
    total = padded_length(frames, DEFAULTS.context)
    latents = torch.randn(1, 4, total, image // 8, image // 8, device=device, dtype=dtype)
    text = torch.randn(1, 77, text_width, device=device, dtype=dtype)
    reference = torch.randn(1, 4, image // 8, image // 8, device=device, dtype=dtype)
    condition = torch.randint(0, 256, (total, 3, image, image), dtype=torch.uint8)
    windows = window_schedule(total, DEFAULTS.context, DEFAULTS.overlap)
    scheduler = make_scheduler()
    scheduler.set_timesteps(DEFAULTS.steps, device=device)

    def step() -> None:
        pipe._predict_noise(latents, scheduler.timesteps[0], text, reference, condition, windows, DEFAULTS.context,
                            guided=DEFAULTS.guidance > 1.0)

    if device.type == "cuda":
        step()
    harness.reset_peak()
    with harness.timer("denoise"):
        for _ in range(steps):
            step()
    with harness.timer("decode"):
        pipe._decode(latents[:, :, :frames], no_progress, CancelToken())
    per_step, decode = harness.timings["denoise"] / steps, harness.timings["decode"]
    return {"resolution": image, "windows": len(windows), "s_per_step": round(per_step, 4),
            "s_per_frame_decode": round(decode / frames, 4),
            f"s_per_frame_{DEFAULTS.steps}_steps": round((DEFAULTS.steps * per_step + decode) / frames, 4)}
