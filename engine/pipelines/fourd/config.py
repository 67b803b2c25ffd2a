"""SV4D model configs in the original repository's inference-config YAML format.

The keys read are those of Stability-AI/generative-models' scripts/sampling/configs/sv4d2*.yaml@0ad7de9a5cb5:
`model.params.network_config.params` (the UNet), `model.params.conditioner_config.params.emb_models` (the OpenCLIP
`arch`, the conditioning VAE's `ddconfig`, the sinusoid sizes), `model.params.first_stage_config.params.decoder_config`
and the top-level N_TIME / N_VIEW used through `${...}` interpolation. Other keys (targets, the unused sampler block)
are ignored, so a copy of an original config loads as it is. The published configs are the built-in defaults
(configs/<model>.yaml beside this module). Only yaml is imported: job validation may call `read_model_config`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from engine.errors import InputError

BUILT_IN = Path(__file__).parent / "configs"
INTERPOLATION = re.compile(r"^\$\{(\w+)\}$")
# open_clip's model configs (src/open_clip/model_configs/<arch>.json): embed_dim and vision_cfg.
OPEN_CLIP_ARCHS = {
    "ViT-H-14": {"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280,
                                                   "head_width": 80, "patch_size": 14}},
    "ViT-L-14": {"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024,
                                                  "head_width": 64, "patch_size": 14}},
}


@dataclass(frozen=True)
class UNetLayout:
    """The hyper-parameters SV4D's and SV3D's UNets share (names as in network_config.params)."""

    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    num_head_channels: int
    transformer_depth: int
    context_dim: int
    adm_in_channels: int
    use_linear_in_transformer: bool
    extra_ff_mix_layer: bool


@dataclass(frozen=True)
class UNetConfig(UNetLayout):
    """SpatialUNetModelWithTime's hyper-parameters."""

    motion_context_dim: int
    time_kernel_size: tuple[int, ...]
    use_camera_emb: bool
    use_3d_attention: bool
    separate_motion_merge_factor: bool


@dataclass(frozen=True)
class ClipConfig:
    """The OpenCLIP vision tower (open_clip's vision_cfg) and its output size."""

    embed_dim: int
    image_size: int
    layers: int
    width: int
    head_width: int
    patch_size: int
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class VAEConfig:
    """The LDM autoencoder's ddconfig (encoder of the conditioner, decoder of the first stage)."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    in_channels: int
    out_ch: int
    z_channels: int
    double_z: bool
    embed_dim: int = 4
    resolution: int = 256  # attn_resolutions are counted from it


@dataclass(frozen=True)
class FourDConfig:
    n_time: int  # frames per window
    n_view: int  # generated views per window
    scale_factor: float
    sigma_dim: int  # sinusoid size of the cond_frames noise level in the vector
    polar_dim: int
    azimuth_dim: int
    unet: UNetConfig
    clip: ClipConfig
    encoder: VAEConfig
    decoder: VAEConfig
    source: str = "built-in"

    @property
    def digest(self) -> str:
        return config_digest(self)


def config_digest(config: Any) -> str:
    """Identifies a config's network hyper-parameters (network cache keys): every field but `source`."""
    fields = {k: v for k, v in asdict(config).items() if k != "source"}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


SV3D_MODELS = ("sv3d_u", "sv3d_p")  # VideoUNet configs (sv3d_config.py); every other model is an SV4D config


def built_in_config(model: str) -> Any:
    path = BUILT_IN / f"{model}.yaml"
    if not path.is_file():
        raise InputError(f"No built-in config for model '{model}'.")
    return parse_config(yaml.safe_load(path.read_text()), model, source=f"built-in {model}")


def read_model_config(path: str | Path, model: str) -> Any:
    """A YAML in the original's inference-config format for `model` -> its config (InputError naming what is
    wrong): FourDConfig for the SV4D models, SV3DConfig for sv3d_u / sv3d_p."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"The model config {path.name} could not be read as YAML: {str(exc).splitlines()[0]}") \
            from None
    return parse_config(data, model, source=path.name)


def parse_config(data: Any, model: str, source: str = "config") -> Any:
    if model in SV3D_MODELS:
        from .sv3d_config import parse_sv3d_config

        return parse_sv3d_config(data, source)
    return parse_model_config(data, source)


def resolved(data: Any, source: str) -> dict[str, Any]:
    """A parsed YAML of the original format with its `${NAME}` references resolved (InputError if not a mapping)."""
    if not isinstance(data, dict):
        raise InputError(f"The model config {source} is not a YAML mapping.")
    return interpolate(data, {k: v for k, v in data.items() if not isinstance(v, (dict, list))}, source)


def model_params(data: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """(model.params, the conditioner's embedder params by their input_key) of an original-format config."""
    params = data["model"]["params"]
    return params, {e["input_key"]: e.get("params", {}) for e in params["conditioner_config"]["params"]["emb_models"]}


@contextlib.contextmanager
def original_format(source: str, family: str) -> Iterator[None]:
    """A missing key or wrong value met while reading an original-format config -> an InputError naming it."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"The model config {source} is missing or has a wrong value for {exc}; it must follow the "
                         f"original {family} format (model.params.network_config.params, conditioner_config, "
                         "first_stage_config).") from None


def shared_problems(unet: UNetLayout, clip_embed_dim: int) -> list[str]:
    """The invariants every SV3D/SV4D UNet relies on (each config's _check adds its own)."""
    problems = []
    if unet.context_dim != clip_embed_dim:
        problems.append(f"context_dim {unet.context_dim} must equal the CLIP embed_dim {clip_embed_dim}")
    if unet.model_channels % 32 or any(unet.model_channels * m % unet.num_head_channels for m in unet.channel_mult):
        problems.append("model_channels must be a multiple of 32 and every level's width of num_head_channels")
    return problems


def parse_model_config(data: Any, source: str = "config") -> FourDConfig:
    data = resolved(data, source)
    with original_format(source, "SV4D"):
        params, embedders = model_params(data)
        network = params["network_config"]["params"]
        decoder = params["first_stage_config"]["params"]["decoder_config"]["params"]
        clip_params = embedders["cond_frames_without_noise"]
        frames = embedders["cond_frames"]
        encoder = frames["encoder_config"]["params"]
        config = FourDConfig(
            n_time=int(clip_params["n_cond_frames"]),
            n_view=int(embedders["cond_view"]["n_cond_frames"]),
            scale_factor=float(params.get("scale_factor", 0.18215)),
            sigma_dim=int(frames["sigma_cond_config"]["params"]["outdim"]),
            polar_dim=int(embedders["polar_rad"]["outdim"]),
            azimuth_dim=int(embedders["azimuth_rad"]["outdim"]),
            unet=_unet_config(network, source),
            clip=clip_config(clip_params["open_clip_embedding_config"].get("params", {}).get("arch", "ViT-H-14"),
                              source),
            encoder=vae_config(encoder["ddconfig"], int(encoder.get("embed_dim", 4))),
            decoder=vae_config(decoder, int(decoder.get("z_channels", 4))),
            source=source)
    _check(config, source)
    return config


def interpolate(value: Any, variables: Mapping[str, Any], source: str) -> Any:
    """OmegaConf-style `${NAME}` references to top-level scalars (the original's N_TIME, N_VIEW, N_FRAMES)."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables, source) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables, source) for v in value]
    if isinstance(value, str) and (match := INTERPOLATION.match(value)):
        if match.group(1) not in variables:
            raise InputError(f"The model config {source} refers to ${{{match.group(1)}}}, which it does not define.")
        return variables[match.group(1)]
    return value


def common_unet_fields(p: Mapping[str, Any], source: str, family: str, required: Mapping[str, Any],
                       kernel_key: str) -> dict[str, Any]:
    """The network_config fields SV4D's and SV3D's UNets share (by the dataclasses' names), after checking the
    settings this app supports only in their published form; `kernel_key` names the temporal kernel's field."""
    for key, value in required.items():
        if p.get(key, value) != value:
            raise InputError(f"The model config {source} sets {key}: {p[key]}; this app runs {family} networks with "
                             f"{key}: {value} only.")
    depth = p.get("transformer_depth", 1)
    if isinstance(depth, list):
        if len(set(depth)) != 1:
            raise InputError(f"The model config {source}: transformer_depth must be the same at every level.")
        depth = depth[0]
    kernel = p.get(kernel_key, 3)
    return dict(
        in_channels=int(p["in_channels"]), out_channels=int(p["out_channels"]),
        model_channels=int(p["model_channels"]), channel_mult=tuple(int(m) for m in p["channel_mult"]),
        num_res_blocks=int(p["num_res_blocks"]),
        attention_resolutions=tuple(int(r) for r in p["attention_resolutions"]),
        num_head_channels=int(p["num_head_channels"]), transformer_depth=int(depth),
        context_dim=int(p["context_dim"]), adm_in_channels=int(p["adm_in_channels"]),
        use_linear_in_transformer=bool(p.get("use_linear_in_transformer", False)),
        extra_ff_mix_layer=bool(p.get("extra_ff_mix_layer", False)),
        **{kernel_key: tuple(int(k) for k in (kernel if isinstance(kernel, list) else [kernel] * 3))})


def _unet_config(p: Mapping[str, Any], source: str) -> UNetConfig:
    required = {"num_classes": "sequential", "use_spatial_transformer": True, "use_motion_attention": True,
                "time_mix_legacy": False, "legacy": False, "use_spatial_context": True,
                "time_block_merge_strategy": "learned_with_images"}
    return UNetConfig(
        **common_unet_fields(p, source, "SV4D", required, "time_kernel_size"),
        motion_context_dim=int(p["motion_context_dim"]),
        use_camera_emb=bool(p.get("use_camera_emb", False)), use_3d_attention=bool(p.get("use_3d_attention", False)),
        separate_motion_merge_factor=bool(p.get("separate_motion_merge_factor", False)))


def clip_config(arch: Any, source: str) -> ClipConfig:
    if isinstance(arch, str):
        if arch not in OPEN_CLIP_ARCHS:
            raise InputError(f"The model config {source} names the OpenCLIP arch '{arch}'; known: "
                             f"{', '.join(OPEN_CLIP_ARCHS)} (or give open_clip's model-config mapping).")
        arch = OPEN_CLIP_ARCHS[arch]
    vision = arch["vision_cfg"]
    return ClipConfig(embed_dim=int(arch["embed_dim"]), image_size=int(vision["image_size"]),
                      layers=int(vision["layers"]), width=int(vision["width"]),
                      head_width=int(vision.get("head_width", 64)), patch_size=int(vision["patch_size"]),
                      mlp_ratio=float(vision.get("mlp_ratio", 4.0)))


def vae_config(dd: Mapping[str, Any], embed_dim: int) -> VAEConfig:
    return VAEConfig(ch=int(dd["ch"]), ch_mult=tuple(int(m) for m in dd["ch_mult"]),
                     num_res_blocks=int(dd["num_res_blocks"]),
                     attn_resolutions=tuple(int(r) for r in dd.get("attn_resolutions", [])),
                     in_channels=int(dd.get("in_channels", 3)), out_ch=int(dd.get("out_ch", 3)),
                     z_channels=int(dd["z_channels"]), double_z=bool(dd.get("double_z", True)), embed_dim=embed_dim,
                     resolution=int(dd.get("resolution", 256)))


def _check(config: FourDConfig, source: str) -> None:
    """Invariants the networks rely on, as clear errors instead of shape mismatches deep inside."""
    unet = config.unet
    vector = config.sigma_dim + config.polar_dim + config.azimuth_dim
    problems = shared_problems(unet, config.clip.embed_dim)
    if unet.adm_in_channels != vector:
        problems.append(f"adm_in_channels {unet.adm_in_channels} must equal the vector size {vector} "
                        f"({config.sigma_dim} + {config.polar_dim} + {config.azimuth_dim})")
    if unet.use_camera_emb and unet.adm_in_channels != 4 * unet.model_channels:
        problems.append("the camera embedding needs adm_in_channels = 4 x model_channels")
    if unet.in_channels != 2 * config.encoder.embed_dim or unet.motion_context_dim != config.encoder.embed_dim:
        problems.append("in_channels must be twice, and motion_context_dim equal to, the VAE's embed_dim")
    if config.n_time < 1 or config.n_view < 1 or config.n_time > 21:
        problems.append("N_TIME must be 1 to 21 and N_VIEW at least 1")
    if problems:
        raise InputError(f"The model config {source} is inconsistent: {'; '.join(problems)}.")
