"""Tiny random checkpoints in the published layouts for the face task (tests only): SVD-XT-1.1 and, when asked, the
trajectory adapter exactly as the Trajectories task writes them (same seed, same bytes, so the two tasks share one
tiny SVD), and MOFA-Video-Hybrid's landmark ControlNet folder (config.json recording `_class_name: FlowControlNet` as
the original saved it) with the Hybrid repo's CMP training checkpoint; for speech runs, AniPortrait's audio2mesh.pt and
audio2pose.pt (whole-model state dicts, weight norm in torch < 2.1's names) with a tiny wav2vec2-base-960h folder, and
a face landmarker .task bundle holding only a synthetic canonical face model (the geometry metadata)."""
from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from engine.models.mofa.cmp import CMP_CHECKPOINT, CMP_CONFIG
from engine.models.mofa.landmark_controlnet import LandmarkControlNet
from engine.pipelines.motion import tiny as motion_tiny
from engine.testing.weights import randomise, save_diffusers_folder
from .aniportrait import MESH_FILE, POSE_FILE, WAV2VEC_DIR, Audio2MeshModel, Audio2PoseModel
from .geometry import MESH_POINTS, METADATA_FILE
from .pipeline import LDMK_DIR, LDMK_KEY, SVD_KEY

TRAJ_KEY, SPEECH_KEY, MEDIAPIPE_KEY = "mofa_traj", "aniportrait", "mediapipe_face"
TASK_FILE = "aniportrait/src/utils/mp_models/face_landmarker_v2_with_blendshapes.task"
# wav2vec2-base's layout (7 conv layers, strides giving 320 samples per feature) at tiny widths
TINY_WAV2VEC = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=32)
TINY_LATENT = 16
# wav2vec2-base-960h's preprocessor_config.json values
PREPROCESSOR = {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
                "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False, "sampling_rate": 16000}
TINY_MATTING = dict(matting_expansion=8, matting_max_features=32)


def tiny_landmark_controlnet(generator: torch.Generator) -> LandmarkControlNet:
    config = {k: v for k, v in motion_tiny.TINY_UNET.items() if k != "num_frames"}
    return randomise(LandmarkControlNet(**config, **TINY_MATTING), generator)


def write_tiny_checkpoints(folders: dict[str, Path], seed: int = 0) -> None:
    """Write tiny 'svd_xt_11' and 'mofa_ldmk' folders, and 'mofa_traj' when given (hybrid runs)."""
    with torch.no_grad():
        if TRAJ_KEY in folders:
            motion_tiny.write_tiny_checkpoints({SVD_KEY: folders[SVD_KEY], TRAJ_KEY: folders[TRAJ_KEY]}, seed)
        else:
            motion_tiny.write_svd(Path(folders[SVD_KEY]), torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed + 1)
        ldmk = Path(folders[LDMK_KEY])
        save_diffusers_folder(tiny_landmark_controlnet(generator), ldmk / LDMK_DIR, class_name="FlowControlNet")
        motion_tiny.write_cmp(ldmk / CMP_CHECKPOINT, ldmk / CMP_CONFIG, motion_tiny.TINY_CMP, generator)
        if SPEECH_KEY in folders:
            write_speech_models(Path(folders[SPEECH_KEY]), torch.Generator().manual_seed(seed + 2))
        if MEDIAPIPE_KEY in folders:
            write_geometry_task(Path(folders[MEDIAPIPE_KEY]) / TASK_FILE, np.random.default_rng(seed + 3))


@torch.no_grad()
def write_speech_models(folder: Path, generator: torch.Generator) -> None:
    """ckpts/aniportrait/{audio2mesh.pt, audio2pose.pt, wav2vec2-base-960h/} with tiny random weights."""
    wav2vec = folder / WAV2VEC_DIR
    wav2vec.mkdir(parents=True, exist_ok=True)
    config = Wav2Vec2Config(**TINY_WAV2VEC)
    config.save_pretrained(wav2vec)
    (wav2vec / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2))
    torch.save(_legacy_weight_norm(randomise(Wav2Vec2Model(config), generator).state_dict()),
               wav2vec / "pytorch_model.bin")
    for file, kind, out in ((MESH_FILE, Audio2MeshModel, 3 * MESH_POINTS), (POSE_FILE, Audio2PoseModel, 6)):
        model = randomise(kind(Wav2Vec2Model(config), latent_dim=TINY_LATENT, out_dim=out), generator)
        if kind is Audio2MeshModel:  # keep the tiny offsets small next to a face a few cm wide
            model.out_fn.weight.mul_(0.05)
        torch.save(_legacy_weight_norm(model.state_dict()), folder / file)


def _legacy_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight-norm parameters under torch < 2.1's names (weight_g, weight_v), as AniPortrait's files were saved."""
    renamed = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        renamed[key.replace("parametrizations.weight.original1", "weight_v")] = value.contiguous()
    return renamed


def synthetic_canonical_face(rng: np.random.Generator) -> np.ndarray:
    """[468, 3] points on a face-sized half ellipsoid (cm, +z towards the camera), jittered."""
    angles = rng.uniform(0, 2 * np.pi, MESH_POINTS)
    radii = np.sqrt(rng.uniform(0, 1, MESH_POINTS))
    x, y = 7 * radii * np.cos(angles), 9 * radii * np.sin(angles)
    z = 4 * np.sqrt(np.clip(1 - radii ** 2, 0, 1))
    return np.stack([x, y, z], 1) + rng.normal(0, 0.05, (MESH_POINTS, 3))


def write_geometry_task(path: Path, rng: np.random.Generator, weighted: int = 33) -> None:
    """A .task zip holding geometry_pipeline_metadata_landmarks.binarypb: a synthetic canonical mesh (VERTEX_PT: x,
    y, z, u, v) and Procrustes weights on `weighted` landmarks, in geometry_pipeline_metadata.proto's encoding."""
    vertices = np.concatenate([synthetic_canonical_face(rng), rng.uniform(0, 1, (MESH_POINTS, 2))], 1)
    mesh = _field(3, 2, struct.pack(f"<{vertices.size}f", *vertices.reshape(-1)))
    metadata = _field(1, 2, mesh)
    for landmark in sorted(rng.choice(MESH_POINTS, weighted, replace=False)):
        reference = _field(1, 0, _varint(int(landmark))) + _field(2, 5, struct.pack("<f", rng.uniform(0.01, 0.1)))
        metadata += _field(2, 2, reference)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr(METADATA_FILE, metadata)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def synthetic_landmarks(frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """[frames, 68, 2] float32: a face-like layout in the middle of a width x height picture (frame 0) and small
    random motions of it (tests only)."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0.15 * np.pi, 0.85 * np.pi, 17)
    jaw = np.stack([0.5 - 0.3 * np.cos(angles), 0.45 + 0.3 * np.sin(angles)], 1)
    inner = np.stack([np.linspace(0.3, 0.7, 51), 0.35 + 0.25 * rng.random(51)], 1)
    base = np.concatenate([jaw, inner]) * np.array([width, height])
    moves = np.cumsum(rng.normal(0, 0.6, (frames, 68, 2)), axis=0)
    moves[0] = 0
    return (base[None] + moves).astype(np.float32)


def tiny_inputs(folder: Path) -> tuple[dict[str, object], dict[str, object]]:
    """A 64x64 portrait and 3 frames of landmarks, with options making the run tiny (the contract test)."""
    from PIL import Image

    portrait = folder / "portrait.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(portrait)
    landmarks = folder / "landmarks.npy"
    np.save(landmarks, synthetic_landmarks(3, 64, 64))
    return {"image": portrait, "landmarks": landmarks}, {"steps": 2, "size": 64, "seed": 3}
