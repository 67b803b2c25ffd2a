"""SV4D 2.0 video-to-4D: 21 prepared frames of an object -> the same 21 frames seen from 4 (or 8) new viewpoints.

As scripts/sampling/simple_video_sample_4d2.py@0ad7de9a5cb5 (Stability-AI/generative-models) runs it: the frames are
covered by windows of T frames (4-view: [0..11], [9..20]; 8-view: [0..4], [4..8], ..., [16..20]); each window
samples T x V latents with the EDM Euler sampler (50 steps, sigma 700 -> 0.002), conditioned on the window's input
frames and on the generated views of its first frame (zeros in the first window); a later window overwrites the
frames it shares with an earlier one. The cameras of the generated views are fixed azimuths relative to the input
view. Latents are decoded in chunks by the fp32 decoder (the original disables autocast for it).

Networks are built on first use for the config in force (the model's published config, a YAML named
`<model>.yaml` beside the weights, or the `model_config` input), so one pipeline can run a differently sized
checkpoint. Random numbers: one CPU generator seeded with `seed`, drawn in the original's order within and across
windows (conditioning noise, then the initial latents). The original draws them from a stream that model building
has already advanced (random initialisation before loading), so its outputs for a seed cannot be matched bit for bit;
with the same noise they match (see the fidelity notes in the task's README).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from engine.errors import CheckpointError, InputError
from engine.offload import ModelOffload
from engine.pipelines.base import OFFLOAD_MODES, CancelToken, Pipeline, Progress, no_progress
from engine.runtime import ModelCache, NetworkKey, cached_network
from engine.tasks import Options
from engine.weights import assign_strict, build_on_meta

from . import checkpoint as ck
from .clip import OpenCLIPImageEmbedder
from .conditioner import Conditioner, Conditioning
from .config import SV3D_MODELS, FourDConfig, built_in_config, read_model_config
from .sampler import AZIMUTHS, GUIDANCE, camera_angles, cfg_denoiser, guidance_scales, sample_reporting, windows
from .unet import SpatialUNetModelWithTime
from .vae import ConditionEncoder, Decoder

MODELS = ("sv4d2", "sv4d2_8views")  # this class's models; SV3DPipeline runs SV3D_MODELS
N_FRAMES = 21  # n_frames of simple_video_sample_4d2.py@0ad7de9a5cb5
STEPS = 50  # num_steps of simple_video_sample_4d2.py@0ad7de9a5cb5 (the steps option's 0)


@dataclass(frozen=True)
class FourDResult:
    views: np.ndarray  # uint8 [V, 21, S, S, 3]: the generated views only (the input view is the input frames)
    azimuths: tuple[float, ...]  # degrees of the generated views, relative to the input view (azimuth 0)
    elevation: float  # degrees, the option as given
    input_view_included: bool = False


@dataclass
class Networks:
    unet: SpatialUNetModelWithTime
    clip: OpenCLIPImageEmbedder
    frames_encoder: ConditionEncoder
    view_encoder: ConditionEncoder  # the same object when the checkpoint's copies are equal
    decoder: Decoder

    def named(self) -> dict[str, nn.Module]:
        named = {"unet": self.unet, "clip": self.clip, "cond_encoder": self.frames_encoder, "decoder": self.decoder}
        if self.view_encoder is not self.frames_encoder:
            named["cond_view_encoder"] = self.view_encoder
        return named


_EQUAL_COPIES: dict[tuple[str, int, int], bool] = {}


def encoder_copies_equal(checkpoint: ck.SV4DCheckpoint) -> bool:
    """Whether the cond_frames and cond_view encoders are the same tensors (checked once per file version)."""
    stat = checkpoint.path.stat()
    key = (str(checkpoint.path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _EQUAL_COPIES:
        _EQUAL_COPIES[key] = checkpoint.same_tensors(ck.FRAMES_ENCODER, ck.VIEW_ENCODER, ck.ENCODING_PARTS)
    return _EQUAL_COPIES[key]


def load_part(checkpoint: ck.SV4DCheckpoint, config: Any, prefix: str, cls: type, build: Callable[[], nn.Module],
              what: str, device: Any, dtype: torch.dtype, networks: ModelCache | None,
              only: tuple[str, ...] = ()) -> Any:
    """One part of a single-file checkpoint, strictly, through the network cache (keyed by file, part, class,
    config digest, device and dtype)."""
    file = checkpoint.path

    def load() -> nn.Module:
        model = build_on_meta(build)
        try:
            return assign_strict(model, checkpoint.part(prefix, only), f"{file.name} ({what}, {config.source})",
                                 device, dtype)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} If the checkpoint has other sizes than the config {config.source}, "
                                  "give its config (--model-config, in the original's YAML format).") from exc

    key = NetworkKey.of(f"{file}#{prefix}@{config.digest}", cls, device, dtype)
    return cached_network(networks, key, load)


def load_networks(file: Path, config: FourDConfig, device: Any, dtype: torch.dtype,
                  networks: ModelCache | None = None) -> Networks:
    """Every part of the single checkpoint, strictly, through the network cache. The decoder stays in float32, as
    the original runs it."""
    checkpoint = ck.SV4DCheckpoint(file)
    checkpoint.check_layout((ck.UNET, ck.CLIP_VISUAL, ck.DECODER,
                             *(p + part for p in (ck.FRAMES_ENCODER, ck.VIEW_ENCODER) for part in ck.ENCODING_PARTS)))

    def part(prefix: str, cls: type, build: Callable[[], nn.Module], what: str, part_dtype: torch.dtype = dtype,
             only: tuple[str, ...] = ()) -> Any:
        return load_part(checkpoint, config, prefix, cls, build, what, device, part_dtype, networks, only)

    frames_encoder = part(ck.FRAMES_ENCODER, ConditionEncoder, lambda: ConditionEncoder(config.encoder),
                          "cond_frames encoder", only=ck.ENCODING_PARTS)
    view_encoder = frames_encoder if encoder_copies_equal(checkpoint) else part(
        ck.VIEW_ENCODER, ConditionEncoder, lambda: ConditionEncoder(config.encoder), "cond_view encoder",
        only=ck.ENCODING_PARTS)
    return Networks(
        unet=part(ck.UNET, SpatialUNetModelWithTime, lambda: SpatialUNetModelWithTime(config.unet), "UNet"),
        clip=part(ck.CLIP, OpenCLIPImageEmbedder, lambda: OpenCLIPImageEmbedder(config.clip), "CLIP image tower",
                  only=("visual.",)),
        frames_encoder=frames_encoder, view_encoder=view_encoder,
        decoder=part(ck.DECODER, Decoder, lambda: Decoder(config.decoder), "decoder", part_dtype=torch.float32))


class FourDPipeline(Pipeline):
    def __init__(self, model: str, folder: Path, device: Any, dtype: torch.dtype,
                 networks: ModelCache | None = None) -> None:
        self.model, self.folder = model, Path(folder)
        self.file = self.folder / f"{model}.safetensors"
        self.device, self.dtype = torch.device(device), dtype
        self.cache = networks
        self.offload = ModelOffload(self.device)
        self._offload_mode = "none"
        self.config = self._default_config = self.default_config()
        self._networks: Networks | None = None

    # ----- loading --------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: ModelCache | None = None) -> "FourDPipeline":
        if "sv4d" in paths and cls is FourDPipeline:
            from .sv4d1 import SV4DPipeline

            return SV4DPipeline.load_both(paths, device, dtype, offload, networks)
        known = MODELS + SV3D_MODELS
        chosen = [name for name in known if name in paths]
        if len(chosen) != 1:
            raise CheckpointError(f"Video to 4D needs exactly one of the checkpoints {', '.join(known)}; "
                                  f"got {', '.join(paths) or 'none'}.")
        if chosen[0] in SV3D_MODELS and cls is FourDPipeline:
            from .sv3d_pipeline import SV3DPipeline

            cls = SV3DPipeline
        pipeline = cls(chosen[0], Path(paths[chosen[0]]), device, dtype, networks)
        if not pipeline.file.is_file():
            raise CheckpointError(f"{pipeline.file} is missing; download the '{chosen[0]}' checkpoint again.")
        return pipeline.with_offload(offload, networks)

    def default_config(self) -> FourDConfig:
        """A `<model>.yaml` beside the weights (a checkpoint of other sizes brings its config), else the built-in."""
        beside = self.folder / f"{self.model}.yaml"
        return read_model_config(beside, self.model) if beside.is_file() else built_in_config(self.model)

    def use_config(self, model_config: str | Path | None) -> None:
        """Switch to another config (the `model_config` input); networks are rebuilt for it on next use."""
        config = read_model_config(model_config, self.model) if model_config else self._default_config
        if config.digest != self.config.digest:
            self.config, self._networks = config, None
            self.offload.enabled = False  # the new networks are staged when they are built

    def with_offload(self, mode: str, networks: Any = None) -> "FourDPipeline":
        """Offload applies to the networks when they are built (on first use)."""
        if mode not in OFFLOAD_MODES:
            raise InputError(f"Unknown offload mode '{mode}'. Use {' or '.join(OFFLOAD_MODES)}.")
        self._offload_mode = mode
        return self

    @classmethod
    def assemble(cls, model: str, config: FourDConfig, nets: Networks, device: Any, dtype: torch.dtype,
                 offload: str = "none") -> "FourDPipeline":
        """A pipeline over networks built elsewhere (benchmarks: random weights, no file)."""
        pipeline = cls(model, Path("."), device, dtype)
        pipeline.config = pipeline._default_config = config
        pipeline._networks = nets
        return pipeline.with_offload(offload)

    def load_networks(self) -> Any:
        return load_networks(self.file, self.config, self.device, self.dtype, self.cache)

    def built(self) -> Any:
        if self._networks is None:
            self._networks = self.load_networks()
        if self._offload_mode == "model" and not self.offload.enabled:
            room = self.cache.make_room if self.cache is not None else None
            self.offload.enable(self._networks.named().values(), room=room)
        return self._networks

    def networks(self) -> dict[str, nn.Module]:
        return self.built().named()

    @classmethod
    def check_options(cls, options: Options) -> None:
        if options.size % 64:
            raise InputError(f"size must be a multiple of 64 (the latents are 1/8 of it and the UNet halves them "
                             f"up to three times); got {options.size}.")

    # ----- one run --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, Any], opts: Options, progress: Progress = no_progress,
                 cancel: CancelToken | None = None) -> FourDResult:
        self.check_options(opts)
        cancel = cancel or CancelToken()
        if opts.model != self.model:
            raise InputError(f"This pipeline was loaded for {self.model}, but the options ask for {opts.model}.")
        frames = self._frames(inputs.get("frames"), opts.size)
        steps = opts.steps or STEPS
        self.use_config(inputs.get("model_config"))
        nets = self.built()
        config = self.config
        n_time, n_view = config.n_time, config.n_view
        polars, azimuths = camera_angles(self.model, opts.elevation, n_view)
        scales = guidance_scales(GUIDANCE[self.model], n_time, n_view)
        conditioner = Conditioner(config, nets.clip, nets.frames_encoder, nets.view_encoder, self._stage, self.device)
        generator = torch.Generator().manual_seed(opts.seed)
        starts = windows(self.model, N_FRAMES, n_time)
        views = np.zeros((n_view, N_FRAMES, opts.size, opts.size, 3), np.uint8)
        latest: dict[int, torch.Tensor] = {}  # frame -> its generated views [V, 3, S, S] in [-1, 1]
        for w, t0 in enumerate(starts):
            def report(fraction: float, message: str, w: int = w) -> None:
                progress(0.02 + 0.98 * (w + fraction) / len(starts), f"Window {w + 1}/{len(starts)}: {message}")

            report(0.0, "conditioning")
            cond, uncond = conditioner(frames[t0:t0 + n_time], latest.get(t0) if w else None, polars, azimuths,
                                       generator, opts.encode_chunk, cancel.check)
            noise = torch.randn((n_time * n_view, 4, opts.size // 8, opts.size // 8), generator=generator)
            denoise = self._denoiser(nets.unet, cond, uncond, scales)
            with self._stage(nets.unet):
                latents = sample_reporting(denoise, noise, steps, report, cancel.check, "denoising step")
            report(0.9, "decoding")
            # [T*V, 3, S, S] in [-1, 1]: the original keeps decoded views so (clamp((x + 1) / 2) * 2 - 1)
            images = self._decode(nets.decoder, latents, opts.decode_chunk, cancel) * 2 - 1
            for i, t in enumerate(range(t0, t0 + n_time)):
                latest[t] = images[i * n_view:(i + 1) * n_view]
                # save_video in sv4d_helpers.py@0ad7de9a5cb5: ((img + 1) / 2 * 255).astype(uint8), truncating
                views[:, t] = ((latest[t] + 1) / 2 * 255).permute(0, 2, 3, 1).numpy().astype(np.uint8)
        progress(1.0, "Done")
        return FourDResult(views, tuple(float(a) for a in AZIMUTHS[self.model][1:]), float(opts.elevation))

    def _frames(self, frames: Any, size: int) -> torch.Tensor:
        """uint8 [21, S, S, 3] -> float [21, 3, S, S] in [-1, 1] (ToTensor, then * 2 - 1, as read_video)."""
        expected = (N_FRAMES, size, size, 3)
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.shape != expected:
            got = getattr(frames, "shape", type(frames).__name__)
            raise InputError(f"Video to 4D needs {N_FRAMES} RGB frames of {size}x{size} (uint8); got {got}.")
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255) * 2.0 - 1.0

    @contextlib.contextmanager
    def _stage(self, *modules: nn.Module) -> Iterator[None]:
        with self.offload.on_device(*modules):
            yield

    def _denoiser(self, unet: SpatialUNetModelWithTime, cond: Conditioning, uncond: Conditioning,
                  scales: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """D(x, sigma) with v-scaling, the CFG batch (uncond first) and the per-slot guidance scales."""
        names = ("crossattn", "concat", "vector", "cond_view")
        num_frames = len(cond.concat)

        def network(model_in: torch.Tensor, c_noise: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
            return unet(model_in, c_noise, batch["crossattn"], batch["vector"], batch["cond_view"], num_frames)

        return cfg_denoiser(network, {n: getattr(cond, n) for n in names}, {n: getattr(uncond, n) for n in names},
                            scales, self.device, self.dtype)

    def _decode(self, decoder: Decoder, latents: torch.Tensor, chunk: int, cancel: CancelToken,
                clamp: bool = True) -> torch.Tensor:
        """Latents / scale factor -> decoder (float32) -> clamp((x + 1) / 2): images in [0, 1] (clamp False: the
        decoder's output as it is), CPU."""
        latents = latents / self.config.scale_factor
        out = []
        with self._stage(decoder):
            for start in range(0, len(latents), chunk):
                cancel.check()
                decoded = decoder(latents[start:start + chunk].to(self.device, torch.float32)).float().cpu()
                out.append(torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0) if clamp else decoded)
        return torch.cat(out)


PIPELINE = FourDPipeline
