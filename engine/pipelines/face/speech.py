"""Speech -> face landmarks with AniPortrait, as MOFA-Video-Hybrid's audio2ldmk.py runs it (@3ad3b546da4c): the
portrait's metric face mesh plus Audio2Mesh's per-frame offsets, posed by Audio2Pose's head motion (rotation scaled by
the head-pose strength, 0.5 there; moving average of 7 frames), projected into the portrait and converted to the 68
points; entry 0 is the portrait's own landmarks. Works for any length, including audio of 5 s or less."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import Wav2Vec2FeatureExtractor

from engine.errors import CheckpointError
from engine.runtime import ModelCache, NetworkKey, cached_network

from . import projection
from .aniportrait import (FPS, MESH_FILE, POSE_FILE, SAMPLE_RATE, WAV2VEC_DIR, Audio2MeshModel, Audio2PoseModel,
                          load_audio_model, pose_chunks)
from .geometry import FaceGeometry
from .landmarks import to_68

HEAD_POSE_STRENGTH = 0.5  # audio2ldmk.py: pose_seq_chunk[:, :3] *= 0.5
SMOOTHING = 7  # audio2ldmk.py: smooth_pose_seq(pose_seq, 7)


@dataclass(frozen=True)
class HeadMotion:
    """strength scales the predicted rotation; window is the moving-average length; still keeps the head as in the
    portrait (no Audio2Pose run)."""

    strength: float = HEAD_POSE_STRENGTH
    window: int = SMOOTHING
    still: bool = False


@dataclass(frozen=True)
class SpeechLandmarks:
    """What the renderer made, stage by stage (kept for checks): meshes [F, 468, 3], poses [F, 6] after scaling and
    smoothing, landmarks [F + 1, 68, 2] in portrait pixels (entry 0 the portrait's own)."""

    meshes: np.ndarray
    poses: np.ndarray
    landmarks: np.ndarray


def frame_count(samples: int, rate: int = SAMPLE_RATE, fps: int = FPS) -> int:
    """ceil(seconds * 25) (audio_util.py's seq_len)."""
    return math.ceil(samples / rate * fps)


class SpeechRenderer:
    """AniPortrait's two audio networks and wav2vec2's input normalisation, on one device in float32."""

    def __init__(self, mesh_model: Audio2MeshModel, pose_model: Audio2PoseModel,
                 extractor: Wav2Vec2FeatureExtractor, device: Any) -> None:
        self.mesh_model, self.pose_model, self.extractor = mesh_model, pose_model, extractor
        self.device = torch.device(device)

    @classmethod
    def load(cls, folder: Path, device: Any, networks: ModelCache | None = None) -> "SpeechRenderer":
        """From the 'aniportrait' checkpoint folder (MyNiuuu/MOFA-Video-Hybrid's ckpts/aniportrait/)."""
        folder = Path(folder)
        wav2vec = folder / WAV2VEC_DIR
        try:
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(wav2vec, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"The wav2vec2 folder has no readable preprocessor_config.json ({exc}); download "
                                  "the checkpoint 'aniportrait' again.") from None

        def network(file: str, kind: type) -> Any:
            path = folder / file
            return cached_network(networks, NetworkKey.of(path, kind, device, torch.float32),
                                  lambda: load_audio_model(kind, path, wav2vec).to(device))

        return cls(network(MESH_FILE, Audio2MeshModel), network(POSE_FILE, Audio2PoseModel), extractor, device)

    def normalise(self, samples: np.ndarray) -> torch.Tensor:
        """16 kHz mono float samples -> [1, samples] as wav2vec2 takes them (zero mean, unit variance)."""
        values = self.extractor(samples, sampling_rate=SAMPLE_RATE).input_values[0]
        return torch.from_numpy(np.asarray(values, np.float32))[None].to(self.device)

    @torch.no_grad()
    def __call__(self, samples: np.ndarray, portrait: np.ndarray, geometry: FaceGeometry, height: int, width: int,
                 motion: HeadMotion = HeadMotion(), cancel: Callable[[], None] = lambda: None,
                 progress: Callable[[float, str], None] = lambda f, m: None) -> SpeechLandmarks:
        """samples: 16 kHz mono; portrait: [>= 468, 2] the portrait's mediapipe points in pixels."""
        values = self.normalise(samples)
        frames = frame_count(values.shape[1])
        progress(0.0, "Speech -> face mesh (Audio2Mesh)")
        offsets = self.mesh_model(values, frames)[0].double().cpu().numpy()
        meshes = offsets.reshape(frames, -1, 3) + geometry.mesh
        poses = np.zeros((frames, 6))
        if not motion.still:
            pieces = []
            chunks = pose_chunks(values.shape[1], frames)
            for k, chunk in enumerate(chunks):
                cancel()
                progress(k / len(chunks), f"Speech -> head pose (Audio2Pose): {chunk.start / SAMPLE_RATE:.0f} s on")
                memory = self.pose_model.memory(values[:, chunk.start:chunk.stop], chunk.frames)
                piece = self.pose_model.decode(memory, cancel=cancel).double().cpu().numpy()
                piece[:, :3] *= motion.strength
                pieces.append(piece)
            poses = projection.smooth(np.concatenate(pieces), motion.window)
        projected = projection.project(meshes, geometry.transform, poses, height, width)
        points = np.concatenate([np.asarray(portrait, np.float64)[None, :projected.shape[1], :2], projected])
        return SpeechLandmarks(meshes, poses, to_68(points))
