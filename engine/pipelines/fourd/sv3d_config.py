"""SV3D model configs (VideoUNet) in the original repository's inference-config YAML format.

The keys read are those of Stability-AI/generative-models' scripts/sampling/configs/sv3d_u.yaml and sv3d_p.yaml
@0ad7de9a5cb5: `model.params.network_config.params` (VideoUNet), the conditioner's embedders by `input_key`
(cond_frames_without_noise: the OpenCLIP `arch`, ViT-H-14 when absent as in the published files; cond_frames: the
conditioning VAE's `ddconfig`; cond_aug / polars_rad / azimuths_rad: sinusoid sizes, the cameras only in SV3D_p),
the first stage's decoder `ddconfig`, and the guider's `max_scale`. Other keys are ignored, so a copy of an original
config loads as it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.errors import InputError

from .config import (ClipConfig, UNetLayout, VAEConfig, clip_config, common_unet_fields, config_digest, model_params,
                     original_format, resolved, shared_problems, vae_config)


@dataclass(frozen=True)
class VideoUNetConfig(UNetLayout):
    """sgm's VideoUNet hyper-parameters."""

    video_kernel_size: tuple[int, ...]


@dataclass(frozen=True)
class SV3DConfig:
    scale_factor: float
    cond_aug_dim: int  # sinusoid size of cond_aug in the vector
    polar_dim: int  # 0 without camera conditioning (SV3D_u)
    azimuth_dim: int
    max_guidance: float  # TrianglePredictionGuider max_scale
    unet: VideoUNetConfig
    clip: ClipConfig
    encoder: VAEConfig
    decoder: VAEConfig
    source: str = "built-in"

    @property
    def cameras(self) -> bool:
        """Whether the network is conditioned on each view's polar and azimuth (SV3D_p)."""
        return self.polar_dim > 0

    @property
    def digest(self) -> str:
        return config_digest(self)


def parse_sv3d_config(data: Any, source: str = "config") -> SV3DConfig:
    data = resolved(data, source)
    with original_format(source, "SV3D"):
        params, embedders = model_params(data)
        encoder = embedders["cond_frames"]["encoder_config"]["params"]
        decoder = params["first_stage_config"]["params"]["decoder_config"]["params"]
        clip_params = embedders["cond_frames_without_noise"]["open_clip_embedding_config"].get("params", {})
        guider = params.get("sampler_config", {}).get("params", {}).get("guider_config", {}).get("params", {})
        config = SV3DConfig(
            scale_factor=float(params.get("scale_factor", 0.18215)),
            cond_aug_dim=int(embedders["cond_aug"]["outdim"]),
            polar_dim=int(embedders.get("polars_rad", {}).get("outdim", 0)),
            azimuth_dim=int(embedders.get("azimuths_rad", {}).get("outdim", 0)),
            max_guidance=float(guider.get("max_scale", 2.5)),
            unet=_video_unet_config(params["network_config"]["params"], source),
            clip=clip_config(clip_params.get("arch", "ViT-H-14"), source),
            encoder=vae_config(encoder["ddconfig"], int(encoder.get("embed_dim", 4))),
            decoder=vae_config(decoder, int(decoder.get("z_channels", 4))),
            source=source)
    _check(config, source)
    return config


def _video_unet_config(p: Mapping[str, Any], source: str) -> VideoUNetConfig:
    required = {"num_classes": "sequential", "use_spatial_context": True, "merge_strategy": "learned_with_images",
                "disable_temporal_crossattention": False, "use_scale_shift_norm": False, "resblock_updown": False,
                "time_downup": False}
    return VideoUNetConfig(**common_unet_fields(p, source, "SV3D", required, "video_kernel_size"))


def _check(config: SV3DConfig, source: str) -> None:
    """Invariants the networks rely on, as clear errors instead of shape mismatches deep inside."""
    unet = config.unet
    vector = config.cond_aug_dim + config.polar_dim + config.azimuth_dim
    problems = shared_problems(unet, config.clip.embed_dim)
    if unet.adm_in_channels != vector:
        problems.append(f"adm_in_channels {unet.adm_in_channels} must equal the vector size {vector} "
                        f"({config.cond_aug_dim} + {config.polar_dim} + {config.azimuth_dim})")
    if (config.polar_dim > 0) != (config.azimuth_dim > 0):
        problems.append("polars_rad and azimuths_rad come together (SV3D_p) or not at all (SV3D_u)")
    if unet.in_channels != 2 * config.encoder.embed_dim:
        problems.append("in_channels must be twice the VAE's embed_dim")
    if problems:
        raise InputError(f"The model config {source} is inconsistent: {'; '.join(problems)}.")
