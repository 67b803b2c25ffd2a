"""CoNR: make a cut-out character (a few sheet views) follow a pose sequence, one frame at a time."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from engine.errors import CheckpointError, InputError
from engine.offload import ModelOffload
from engine.pipelines.base import CancelToken, Pipeline, Progress, no_progress
from engine.runtime import ModelCache, NetworkKey, cached_network
from engine.tasks import Options
from engine.weights import frozen_on, load_pickle_safely
from engine.pipelines.dance.networks import NETWORK_NAMES, DanceNetConfig, build_networks, normalize_input
from engine.pipelines.dance.sheets import check_output_size, fit_frame, paste_back, prepare_sheets
from engine.pipelines.dance.udp import (PoseImageSequence, UDPSequence, check_udp_frame, predict_udp,
                                        prepare_pose_image, prepare_udp_frame)

WORKING_SIZE = 256  # --dataloader_imgsize default in train.py@660c4f771390
SIZE_MULTIPLE = 128  # five stride-2 stages, then the shader's own /4 on the coarsest level
POSE_MODES = ("udp", "parser")


def frame_range(options: Options, total: int) -> range:
    """The pose frames a job renders: frame_start up to frame_end (-1: to the end)."""
    end = total if options.frame_end < 0 else min(options.frame_end, total)
    if options.frame_start < 0 or options.frame_start >= end:
        raise InputError(f"The frame range {options.frame_start}..{options.frame_end} selects no frame of a "
                         f"{total}-frame pose sequence; pick a start below {total} and an end above the start.")
    return range(options.frame_start, end)


@dataclass
class _Character:
    """Sheet tensors and parser features: computed once per character."""

    key: str
    reference: torch.Tensor  # [1, M, 4, S, S]
    features: list[torch.Tensor]  # [1, M, C, h, w] per level


class DanceNetworks(nn.Module):
    """CoNR's four networks as one cache entry (they come from one folder and always run together)."""

    def __init__(self, nets: Mapping[str, nn.Module], device: Any, dtype: Any) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({name: frozen_on(net, device, dtype) for name, net in nets.items()})


def _read_networks(folder: Path) -> dict[str, nn.Module]:
    states = {}
    for name in NETWORK_NAMES:
        file = folder / f"{name}.pth"
        if not file.is_file():
            raise CheckpointError(f"CoNR checkpoint {file} is missing; download the 'conr' models again.")
        states[name] = load_pickle_safely(file, "conr")
    try:
        config = DanceNetConfig.from_state_dicts(states)
        with torch.device("meta"):
            networks = build_networks(config)
        for name, net in networks.items():
            net.load_state_dict(states[name], strict=True, assign=True)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"The files in {folder} are not the CoNR networks this app expects ({exc}); "
                              "download the 'conr' models again.") from exc
    return networks


class DancePipeline(Pipeline):
    def __init__(self, networks: Mapping[str, nn.Module], device: torch.device, dtype: torch.dtype) -> None:
        self.nets = {name: frozen_on(net, device, dtype) for name, net in networks.items()}
        self.device, self.dtype = torch.device(device), dtype
        self.offload = ModelOffload(self.device)
        self._character: _Character | None = None

    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: ModelCache | None = None) -> "DancePipeline":
        """paths["conr"]: the Space snapshot holding weights/{udpparsernet,...}.pth."""
        folder = Path(paths["conr"]) / "weights"
        nets = cached_network(networks, NetworkKey.of(folder, DanceNetworks, device, dtype),
                              lambda: DanceNetworks(_read_networks(folder), device, dtype))
        return cls(nets.nets, device, dtype).with_offload(offload, networks)

    def networks(self) -> dict[str, nn.Module]:
        return dict(self.nets)

    def __call__(self, inputs: Mapping[str, Any], opts: Options,
                 progress: Progress = no_progress, cancel: CancelToken | None = None) -> Iterator[np.ndarray]:
        """Validate now, then yield float32 HxWx4 premultiplied RGBA frames in [0, 1] one by one.

        inputs: "sheets" (list of HxWx4 uint8 RGBA cut-outs), "poses" (a sequence of UDP frames or of pose pictures,
        see udp.py), "pose_mode" ("udp", the default, or "parser" for pictures whose poses the parser predicts)."""
        self.check_options(opts)
        pose_mode = inputs.get("pose_mode", "udp")
        if pose_mode not in POSE_MODES:
            raise InputError(f"pose_mode must be one of {POSE_MODES} (got {pose_mode!r}).")
        poses = inputs.get("poses")
        if poses is None or not hasattr(poses, "__len__"):
            raise InputError("No pose sequence given: choose a UDP sequence (.zip of .npz frames) or pose pictures.")
        wrong_kind = PoseImageSequence if pose_mode == "udp" else UDPSequence
        if isinstance(poses, wrong_kind):
            raise InputError(f"pose_mode '{pose_mode}' needs "
                             f"{'UDP .npz frames' if pose_mode == 'udp' else 'pose pictures'}, but the "
                             "sequence holds the other kind; switch the pose mode or the pose input.")
        frames = frame_range(opts, len(poses))
        sheets = prepare_sheets(inputs.get("sheets") or [], opts.working_size)
        return self._frames(sheets, poses, frames, pose_mode, opts, progress, cancel or CancelToken())

    @classmethod
    def check_options(cls, options: Options) -> None:
        if options.working_size % SIZE_MULTIPLE:
            raise InputError(f"working_size must be a multiple of {SIZE_MULTIPLE} (got {options.working_size}).")
        if options.output_size == "fit":
            check_output_size(options.width, options.height)


    def _frames(self, sheets: tuple[np.ndarray, np.ndarray], poses: Sequence[Any], frames: range, pose_mode: str,
                opts: Options, progress: Progress, cancel: CancelToken) -> Iterator[np.ndarray]:
        progress(0.0, "Reading the character sheets")
        character = self._parse_character(*sheets)
        for done, index in enumerate(frames, start=1):
            cancel.check()
            pose = poses[index]
            name = f"#{index}"
            if pose_mode == "udp":
                pose = check_udp_frame(pose, name)
                target, box = prepare_udp_frame(pose, opts.working_size)
            else:
                target, box = prepare_pose_image(pose, opts.working_size, name)
            rgba = self._render(character, target, pose_mode)
            frame = paste_back(rgba, box, pose.shape[:2])
            if opts.output_size == "fit":
                frame = fit_frame(frame, opts.width, opts.height)
            progress(done / len(frames), f"Frame {done}/{len(frames)}")
            yield frame

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, self.dtype)

    def _parse_character(self, rgb: np.ndarray, mask: np.ndarray) -> _Character:
        """Sheet features from the parser's encoder; reused while the same sheets come back."""
        key = hashlib.sha256(rgb.tobytes() + mask.tobytes()).hexdigest()
        if self._character is None or self._character.key != key:
            with torch.inference_mode(), self.offload.on_device(self.nets["udpparsernet"]):
                rgb_t, mask_t = self._tensor(rgb), self._tensor(mask)
                features = self.nets["udpparsernet"].encode(normalize_input(rgb_t))
                # the original multiplies the (already premultiplied) sheet RGB by alpha once more here
                reference = torch.cat([mask_t * rgb_t, mask_t], dim=1)
            self._character = _Character(key, reference[None], [f[None] for f in features])
        return self._character

    def _render(self, character: _Character, target: np.ndarray, pose_mode: str) -> np.ndarray:
        """One pose -> SxSx4 premultiplied RGBA (float32)."""
        with torch.inference_mode(), self.offload.on_device(*self.nets.values()):
            x = self._tensor(target)[None]
            if pose_mode == "parser":
                x = predict_udp(self.nets["udpparsernet"], x)
            target_features = self.nets["target_pose_encoder"].encode(normalize_input(x))
            message = self.nets["shader"](target_features, character.reference, character.features)
            rgba = self.nets["rgbadecodernet"](message).float()
            rgba = torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], dim=1)
            return rgba[0].permute(1, 2, 0).cpu().numpy()


PIPELINE = DancePipeline
