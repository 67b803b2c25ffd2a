"""SV3D (u and p): the orbit's cameras, its guidance, and the conditioning of one image, as
scripts/sampling/simple_video_sample.py@0ad7de9a5cb5 (Stability-AI/generative-models) builds them.

- 21 views (num_frames = 21 for sv3d_u / sv3d_p), 50 steps, cond_aug 1e-5, seed 23, decoding_t 14.
- SV3D_p cameras: elevations_deg (one value for every view, default 10, or 21 values) -> polar = deg2rad(90 - e);
  azimuths_deg (default linspace(0, 360, 22)[1:] % 360) made relative to the LAST view's azimuth:
  deg2rad((a - azimuths[-1]) % 360). The last view is the input's own view: after decoding, the original replaces
  its frame by the input image. (`azimuths_rad[:-1].sort()` in the original sorts a copy: it changes nothing.)
- Conditioning (sgm GeneralConditioner with the sv3d configs): the input image + 1e-5 * randn noise is VAE-encoded
  (mode, unscaled) to the concat latents, repeated for the 21 frames; CLIP of the clean image is each frame's
  cross-attention token; the vector is the 256-d sinusoid of cond_aug (+ SV3D_p: the 512-d polar and azimuth
  sinusoids per view). The unconditional half zeroes the CLIP token and the concat latents only (the vector stays).
- The noise for cond_frames is drawn before the initial latents, from one generator seeded with the seed (the
  original seeds torch after building the model, so on the CPU its numbers for a seed are the same as here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from engine.errors import InputError

from .conditioner import encode
from .sampler import Guidance
from .sv3d_config import SV3DConfig
from .unet import timestep_embedding

N_VIEWS = 21  # num_frames for sv3d_u / sv3d_p
COND_AUG = 1e-5  # cond_aug for sv3d_u / sv3d_p
DEFAULT_ELEVATION = 10.0  # elevations_deg
STEPS = 50  # num_steps default for sv3d
DECODE_CHUNK = 14  # decoding_t


def triangle_guidance(config: SV3DConfig) -> Guidance:
    """TrianglePredictionGuider(max_scale 2.5 from the config, min 1.0, period 1.0): 1 -> 2.5 -> 1 over the views."""
    return Guidance("triangle", config.max_guidance)


def default_azimuths() -> np.ndarray:
    """Degrees: linspace(0, 360, 22)[1:] % 360 (the last view, 360 -> 0, is the input's)."""
    return np.linspace(0, 360, N_VIEWS + 1)[1:] % 360


def parse_degrees(text: str, what: str) -> list[float]:
    """'10, 20 30' -> [10.0, 20.0, 30.0]; an empty text -> []."""
    parts = [p for p in text.replace(",", " ").replace(";", " ").split() if p]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise InputError(f"{what} must be numbers in degrees separated by commas or spaces; got '{text}'.") from None


def camera_path(elevation: float, elevations: Sequence[float] = (), azimuths: Sequence[float] = ()
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(elevations_deg, azimuths_deg, polars_rad, azimuths_rad) of the 21 views, float64, as the original:
    `elevations` (21 values) or else `elevation` for every view; `azimuths` (21 values) or else the default orbit."""
    if elevations and len(elevations) != N_VIEWS:
        raise InputError(f"Give 1 elevation, or a list of {N_VIEWS} (one per view); got {len(elevations)}.")
    if azimuths and len(azimuths) != N_VIEWS:
        raise InputError(f"Give a list of {N_VIEWS} azimuths (one per view, the last being the input's view); got "
                         f"{len(azimuths)}.")
    elevations_deg = np.asarray(elevations if elevations else [elevation] * N_VIEWS, dtype=np.float64)
    if np.any(np.abs(elevations_deg) > 90):
        raise InputError("Elevations must lie between -90 and 90 degrees.")
    azimuths_deg = np.asarray(azimuths, dtype=np.float64) if azimuths else default_azimuths()
    polars_rad = np.array([np.deg2rad(90 - e) for e in elevations_deg])
    azimuths_rad = np.array([np.deg2rad((a - azimuths_deg[-1]) % 360) for a in azimuths_deg])
    return elevations_deg, azimuths_deg, polars_rad, azimuths_rad


def vector(config: SV3DConfig, polars_rad: np.ndarray, azimuths_rad: np.ndarray) -> torch.Tensor:
    """[21, adm]: the cond_aug sinusoid per view, then (SV3D_p) the polar and azimuth sinusoids per view."""
    parts = [timestep_embedding(torch.full((N_VIEWS,), COND_AUG), config.cond_aug_dim)]
    if config.cameras:
        parts += [timestep_embedding(torch.tensor(polars_rad), config.polar_dim),
                  timestep_embedding(torch.tensor(azimuths_rad), config.azimuth_dim)]
    return torch.cat(parts, dim=1)


@dataclass
class SV3DConditioning:
    crossattn: torch.Tensor  # [21, 1, d]
    concat: torch.Tensor  # [21, 4, h, w]
    vector: torch.Tensor  # [21, adm]


def condition(config: SV3DConfig, clip: nn.Module, encoder: nn.Module, image: torch.Tensor, polars_rad: np.ndarray,
              azimuths_rad: np.ndarray, generator: torch.Generator, device: torch.device,
              stage: Callable[..., object], check: Callable[[], None] = lambda: None
              ) -> tuple[SV3DConditioning, SV3DConditioning]:
    """image [1, 3, S, S] in [-1, 1] -> (cond, uncond). Draws the cond_frames noise from `generator`."""
    noisy = image + COND_AUG * torch.randn(image.shape, generator=generator)
    with stage(clip):
        crossattn = clip(image.to(device)).float().cpu()[:, None]  # [1, 1, d]
    with stage(encoder):
        concat = encode(encoder, noisy, 1, device, check)  # [1, 4, h, w]
    vec = vector(config, polars_rad, azimuths_rad)
    cond = SV3DConditioning(crossattn.expand(N_VIEWS, -1, -1), concat.expand(N_VIEWS, -1, -1, -1), vec)
    uncond = SV3DConditioning(torch.zeros_like(cond.crossattn), torch.zeros_like(cond.concat), vec)
    return cond, uncond
