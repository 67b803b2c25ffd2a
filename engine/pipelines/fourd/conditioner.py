"""SV4D's conditioning, as sgm's GeneralConditioner builds it for one window (sgm/modules/encoders/modules.py and
scripts/demo/sv4d_helpers.py@0ad7de9a5cb5, embedders in config order):

0 cond_frames_without_noise: CLIP of the T input frames -> crossattn [1, T, d].
1 cond_frames: the T input frames, each repeated for the V views ((frame, view) order), plus 1e-5 * noise (the
  ZeroSampler's sigma), VAE-encoded (mode, UNSCALED) -> concat; and the 256-d sinusoid of that sigma -> vector.
2, 3 polar_rad / azimuth_rad: 512-d sinusoids of each slot's camera (cos first) -> vector = [256 | 512 | 512].
4 cond_view: the V generated views of the window's first frame (+1e-5 noise), VAE-encoded; zeroed in the first
  window (image_only_indicator 0 there).
5 cond_motion: the T input frames (+1e-5 noise), encoded by the original but unused by the network: only its noise
  is drawn here.
The unconditional half zeroes 0, 1 (both outputs), 4 and 5. The conditioner runs twice (cond, then uncond); each run
draws, for embedders 1, 4 and 5, one `randn(1)` (the ZeroSampler draws and discards it) and the noise, so these
draws come before the sampler's initial noise in the random stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .config import FourDConfig
from .unet import timestep_embedding

COND_SIGMA = 1e-5  # ZeroSampler: zeros + 1.0e-5, sgm/modules/diffusionmodules/sigma_sampling.py@0ad7de9a5cb5


@dataclass
class Conditioning:
    crossattn: torch.Tensor  # [1, T, d]
    concat: torch.Tensor  # [T*V, 4, h, w]
    vector: torch.Tensor  # [T*V, adm]
    cond_view: torch.Tensor  # [V, 4, h, w]


def camera_vector(config: FourDConfig, polars: np.ndarray, azimuths: np.ndarray, sigma_part: bool) -> torch.Tensor:
    """[T*V, sigma_dim + polar_dim + azimuth_dim]: the cond_frames sigma sinusoid (zeros for the unconditional half)
    and the per-slot polar and azimuth sinusoids, slots in (frame, view) order."""
    slots = config.n_time * len(polars)
    polar = torch.tensor(np.tile(polars, config.n_time))
    azimuth = torch.tensor(np.tile(azimuths, config.n_time))
    sigma = timestep_embedding(torch.full((1,), COND_SIGMA), config.sigma_dim).expand(slots, -1)
    if not sigma_part:
        sigma = torch.zeros_like(sigma)
    return torch.cat([sigma, timestep_embedding(polar, config.polar_dim),
                      timestep_embedding(azimuth, config.azimuth_dim)], dim=1)


def encode(encoder: nn.Module, images: torch.Tensor, chunk: int, device: torch.device,
           check: Callable[[], None] = lambda: None) -> torch.Tensor:
    """VAE latents (mode, unscaled) of images in [-1, 1], `chunk` at a time; float32 on the CPU."""
    dtype = next(encoder.parameters()).dtype
    out = []
    for start in range(0, len(images), chunk):
        check()
        out.append(encoder(images[start:start + chunk].to(device, dtype)).float().cpu())
    return torch.cat(out)


class Conditioner:
    """Builds one window's conditional and unconditional inputs from the CLIP tower and the conditioning encoders
    (`frames_encoder` for cond_frames, `view_encoder` for cond_view: one network when the checkpoint's copies are
    equal). `stage(*networks)` is the pipeline's offload context."""

    def __init__(self, config: FourDConfig, clip: nn.Module, frames_encoder: nn.Module, view_encoder: nn.Module,
                 stage: Callable[..., object], device: torch.device) -> None:
        self.config, self.clip = config, clip
        self.frames_encoder, self.view_encoder = frames_encoder, view_encoder
        self.stage, self.device = stage, device

    def __call__(self, motion: torch.Tensor, views: torch.Tensor | None, polars: np.ndarray, azimuths: np.ndarray,
                 generator: torch.Generator, encode_chunk: int,
                 check: Callable[[], None] = lambda: None) -> tuple[Conditioning, Conditioning]:
        """motion [T, 3, H, W] input frames and views [V, 3, H, W] (None in the first window), both in [-1, 1].
        Returns (cond, uncond)."""
        n_view = len(polars)
        frames = motion[:, None].expand(-1, n_view, -1, -1, -1).flatten(0, 1)
        view_images = views if views is not None else torch.zeros(n_view, *motion.shape[1:])
        noise = {}
        for run in ("cond", "uncond"):  # both runs draw; only the conditional run's noise is used
            for name, images in (("frames", frames), ("view", view_images), ("motion", motion)):
                torch.randn((1,), generator=generator)  # the ZeroSampler's discarded draw
                noise[run, name] = torch.randn(images.shape, generator=generator)
        with self.stage(self.clip):
            crossattn = self.clip(motion.to(self.device)).float().cpu()[None]
        encoders = (self.frames_encoder,) if views is None else (self.frames_encoder, self.view_encoder)
        with self.stage(*dict.fromkeys(encoders)):
            concat = encode(self.frames_encoder, frames + noise["cond", "frames"] * COND_SIGMA, encode_chunk,
                            self.device, check)
            if views is None:
                cond_view = torch.zeros(n_view, *concat.shape[1:])
            else:
                cond_view = encode(self.view_encoder, view_images + noise["cond", "view"] * COND_SIGMA,
                                   encode_chunk, self.device, check)
        cond = Conditioning(crossattn, concat, camera_vector(self.config, polars, azimuths, True), cond_view)
        uncond = Conditioning(torch.zeros_like(crossattn), torch.zeros_like(concat),
                              camera_vector(self.config, polars, azimuths, False), torch.zeros_like(cond_view))
        return cond, uncond
