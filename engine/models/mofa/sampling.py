"""Stable Video Diffusion sampling as MOFA's pipelines run it, shared by the trajectory and face tasks.

- Condition: CLIP embedding of the first frame ([0,1] anti-alias-resized to 224, no CLIP mean/std: quirk 4) and VAE
  latents (`latent_dist.mode()`, no scaling factor) of the frame in [-1,1] plus 0.02 x noise from a CPU generator
  seeded with the seed; each with a zero unconditional half (CFG always on).
- Time ids fixed to [6, 128, 0.02] whatever the caller passes (quirk 3).
- One prediction: scale the doubled latents, concatenate the image latents, ask `residuals` for the ControlNet
  residuals (one adapter, or the hybrid blend), run the UNet (residuals injected MOFA's way), CFG with per-frame
  guidance linspace(1, 3, frames).
- Decode `chunk` frames at a time.
Numbers: MOFA-Video-Traj/pipeline/pipeline.py@3ad3b546da4c and MOFA-Video-Keypoint/pipeline/
svdxt_pipeline_ctrlnet_loop.py@3ad3b546da4c (`noise_aug_strength = 0.02`, `_get_add_time_ids(..., 6, 128)`,
min/max_guidance_scale 1.0/3.0, `_encode_image` at 224).

Seeds: the initial latents come from a generator on the device seeded with `seed` (on CUDA the demos' global CUDA
stream after `set_seed`); the noise augmentation from a separate CPU generator (the demos' global CPU stream).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing
from torch import nn

from engine.errors import CheckpointError
from engine.models.mofa.svd_unet import MofaSVDUNet
from engine.models.mofa.time_context import legacy_time_context
from engine.offload import ModelOffload
from engine.jobs import cancellable
from engine.pipelines.base import CancelToken, Progress
from engine.weights import load_clip_vision, load_diffusers_model

TIME_IDS = (6.0, 128.0, 0.02)  # fps - 1, motion bucket, noise augmentation: hard-coded in the original
NOISE_AUG = 0.02  # noise_aug_strength the demos pass
GUIDANCE = (1.0, 3.0)  # min/max_guidance_scale defaults, per frame
CLIP_SIZE = 224

Residuals = Callable[[torch.Tensor, torch.Tensor], tuple[Sequence[torch.Tensor], torch.Tensor]]
"""residuals(model_input [2,F,8,h,w], t) -> (12 down residuals, mid residual), each [2*F, c, h', w']."""


def load_svd(folder: Path, checkpoint: str, device: Any, dtype: Any, networks: Any = None) -> dict[str, Any]:
    """SVD-XT's UNet (with MOFA's residual injection), VAE and image encoder from the network cache, and its
    scheduler: the keyword arguments every MOFA pipeline is built with."""
    scheduler_dir = folder / "scheduler"
    if not (scheduler_dir / "scheduler_config.json").is_file():
        raise CheckpointError(f"Missing {scheduler_dir / 'scheduler_config.json'}; download '{checkpoint}' again.")
    return {
        "unet": load_diffusers_model(MofaSVDUNet, folder / "unet", device, dtype, networks=networks),
        "vae": load_diffusers_model(AutoencoderKLTemporalDecoder, folder / "vae", device, dtype, networks=networks),
        "image_encoder": load_clip_vision(folder / "image_encoder", device, dtype, networks=networks),
        "scheduler": EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(scheduler_dir)),
    }


@dataclass(frozen=True)
class Condition:
    """What every denoising step sees of the first frame (unconditional half first)."""

    context: torch.Tensor  # [2, 1, D] CLIP image embedding (zeros | embedding)
    image_latents: torch.Tensor  # [2, 4, h, w] (zeros | VAE latents)
    pixels: torch.Tensor  # [2, 3, H, W] the frame in [-1, 1], the ControlNets' `controlnet_cond`


class SVDSampler:
    """The SVD networks and the steps every MOFA pipeline shares; `offload` stages them."""

    def __init__(self, unet: MofaSVDUNet, vae: AutoencoderKLTemporalDecoder, image_encoder: nn.Module,
                 scheduler_config: Any, device: torch.device, dtype: torch.dtype, offload: ModelOffload) -> None:
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        self.scheduler_config = scheduler_config
        self.device, self.dtype, self.offload = device, dtype, offload

    def scheduler(self, steps: int) -> EulerDiscreteScheduler:
        scheduler = EulerDiscreteScheduler.from_config(self.scheduler_config)
        scheduler.set_timesteps(steps, device=self.device)
        return scheduler

    def encode_condition(self, pixels: torch.Tensor, seed: int) -> Condition:
        """pixels [1,3,H,W] float in [0,1] -> Condition."""
        clip_in = _resize_with_antialiasing(pixels, (CLIP_SIZE, CLIP_SIZE))  # no CLIP mean/std, as the demos
        with self.offload.on_device(self.image_encoder):
            embedding = self.image_encoder(clip_in.to(self.device, self.dtype)).image_embeds[:, None]
        noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(seed))
        noisy = (pixels * 2 - 1) + NOISE_AUG * noise
        upcast = self.vae.dtype == torch.float16 and self.vae.config.force_upcast
        with self.offload.on_device(self.vae):
            if upcast:
                self.vae.to(torch.float32)
            latents = self.vae.encode(noisy.to(self.device, self.vae.dtype)).latent_dist.mode()
            if upcast:
                self.vae.to(torch.float16)
        latents = latents.to(self.dtype)
        cond = (pixels * 2 - 1).repeat(2, 1, 1, 1).to(self.device, self.dtype)
        return Condition(torch.cat([torch.zeros_like(embedding), embedding]),
                         torch.cat([torch.zeros_like(latents), latents]), cond)

    def initial_latents(self, frames: int, height: int, width: int, seed: int,
                        scheduler: EulerDiscreteScheduler) -> torch.Tensor:
        generator = torch.Generator(self.device).manual_seed(seed)
        latents = torch.randn((1, frames, 4, height // 8, width // 8), generator=generator,
                              device=self.device, dtype=self.dtype)
        return latents * scheduler.init_noise_sigma

    def time_ids(self) -> torch.Tensor:
        return torch.tensor([TIME_IDS], dtype=self.dtype, device=self.device).repeat(2, 1)

    def guidance(self, frames: int) -> torch.Tensor:
        low, high = GUIDANCE
        return torch.linspace(low, high, frames).view(1, frames, 1, 1, 1).to(self.device, self.dtype)

    def predict(self, latents: torch.Tensor, t: torch.Tensor, scheduler: EulerDiscreteScheduler,
                cond: Condition, residuals: Residuals, cancel: CancelToken | None = None) -> torch.Tensor:
        """latents [1,F,4,h,w] -> the guided model output [1,F,4,h,w] at timestep t. With `cancel`, Stop is also
        honoured between the adapter and the UNet (each takes minutes at full size on a CPU)."""
        frames = latents.shape[1]
        model_in = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        image_latents = cond.image_latents[:, None].expand(-1, frames, -1, -1, -1)
        model_in = torch.cat([model_in, image_latents], dim=2)
        down, mid = residuals(model_in, t)
        if cancel is not None:
            cancel.check()
        prediction = self.unet(model_in, t, cond.context, self.time_ids(), down, mid)
        uncond, conditional = prediction.chunk(2)
        return uncond + self.guidance(frames) * (conditional - uncond)

    @contextlib.contextmanager
    def denoising(self, adapters: Sequence[nn.Module], demo_context_order: bool,
                  cancel: CancelToken | None = None) -> Iterator[None]:
        """The UNet and the adapters on the device (offload), in diffusers 0.24's temporal context order if asked;
        with `cancel`, Stop is honoured at every block of them too (see engine.jobs.cancellable)."""
        order = legacy_time_context(self.unet, *adapters) if demo_context_order else contextlib.nullcontext()
        checked = cancellable(cancel, self.unet, *adapters) if cancel is not None else contextlib.nullcontext()
        with self.offload.on_device(self.unet, *adapters), order, checked:
            yield

    def decode(self, latents: torch.Tensor, chunk: int, cancel: CancelToken) -> torch.Tensor:
        """latents [1,F,4,h,w] -> frames [F,H,W,3] float32 in [0,1] on the CPU."""
        latents = latents.flatten(0, 1).to(self.vae.dtype) * (1 / self.vae.config.scaling_factor)
        pieces = []
        with self.offload.on_device(self.vae):
            for start in range(0, len(latents), chunk):
                cancel.check()
                part = latents[start:start + chunk]
                pieces.append(self.vae.decode(part, num_frames=len(part)).sample.float().cpu())
        return (torch.cat(pieces) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)


def denoise(scheduler: EulerDiscreteScheduler, latents: torch.Tensor,
            step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], progress: Progress, cancel: CancelToken,
            span: tuple[float, float] = (0.05, 0.9)) -> torch.Tensor:
    """Run `step(latents, t) -> latents` over the scheduler's timesteps, with cancellation and progress."""
    start, end = span
    total = len(scheduler.timesteps)
    for i, t in enumerate(scheduler.timesteps):
        cancel.check()
        latents = step(latents, t)
        progress(start + (end - start) * (i + 1) / total, f"Denoising step {i + 1}/{total}")
    return latents
