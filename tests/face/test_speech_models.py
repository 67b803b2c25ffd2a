"""AniPortrait's pieces against independent statements: the ALiBi mask and slopes, the 5 s chunking, incremental
pose decoding against the original's full re-run of the decoder, the wav2vec2 feature interpolation, strict loading
of the published layout, the perspective projection, Euler angles and smoothing on hand cases, and mediapipe's face
geometry (weighted Procrustes, metric mesh) on synthetic cases with known answers."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import CheckpointError
from engine.pipelines.face import aniportrait, geometry, projection, speech, tiny
from engine.pipelines.face.aniportrait import Chunk, pose_chunks
from tests.face.conftest import speech_like
from tests.tolerance import assert_relative_close

INF = float("-inf")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("aniportrait")
    tiny.write_speech_models(folder, torch.Generator().manual_seed(5))
    return folder


@pytest.fixture(scope="module")
def renderer(models: Path) -> speech.SpeechRenderer:
    return speech.SpeechRenderer.load(models, "cpu")


# ---------------------------------------------------------------------------------------------------- ALiBi, chunks

def test_alibi_slopes_and_mask_by_hand() -> None:
    assert aniportrait.alibi_slopes(8) == [2.0 ** -k for k in range(1, 9)]
    assert aniportrait.alibi_slopes(6) == [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]
    mask = aniportrait.alibi_mask(8, 3)
    assert mask.shape == (8, 3, 3)
    assert mask[0].tolist() == [[0, INF, INF], [-0.5, 0, INF], [-1.0, -0.5, 0]]
    assert mask[7].tolist() == [[0, INF, INF], [-1 / 256, 0, INF], [-2 / 256, -1 / 256, 0]]


@pytest.mark.parametrize("seconds_samples, frames, expected", [
    (48000, 75, [Chunk(0, 48000, 75)]),  # 3 s: one chunk (the original crashes at <= 5 s)
    (80000, 125, [Chunk(0, 80000, 125)]),  # exactly 5 s
    (112000, 175, [Chunk(0, 112000, 175)]),  # 7 s: the 2 s piece merged into the first, 125 + 50 frames
    (192000, 300, [Chunk(0, 80000, 125), Chunk(80000, 192000, 175)]),  # 12 s
    (160000, 250, [Chunk(0, 160000, 250)]),  # exactly 10 s: the original's `250 % 125` would give 125
    (159700, 250, [Chunk(0, 159700, 250)]),  # a last piece that rounds up to 125 frames
])
def test_pose_chunks_by_hand(seconds_samples: int, frames: int, expected: list[Chunk]) -> None:
    assert speech.frame_count(seconds_samples) == frames
    assert pose_chunks(seconds_samples, frames) == expected


# ---------------------------------------------------------------------------------------------------- networks

def test_incremental_pose_decoding_equals_the_originals_full_reruns(renderer: speech.SpeechRenderer) -> None:
    """pose_model.py's infer: the whole decoder on the growing sequence each frame, tgt_mask the ALiBi mask, memory
    mask True off the diagonal; its last pass is the result."""
    model = renderer.pose_model
    values = renderer.normalise(speech_like(0.6))
    frames = speech.frame_count(values.shape[1])
    with torch.no_grad():
        memory = model.memory(values, frames)
        ours = model.decode(memory)
        mask = aniportrait.alibi_mask(8, frames)
        memory_mask = ~torch.eye(frames, dtype=torch.bool)
        embedded = model.pose_map(torch.zeros(1, 1, 6))
        for i in range(frames):
            decoder_in = embedded + model.PPE.pe[:, :i + 1] + model.id_embed(torch.tensor([42]))[:, None]
            out = model.pose_map_r(model.transformer_decoder(decoder_in, memory[None], tgt_mask=mask[:, :i + 1, :i + 1],
                                                             memory_mask=memory_mask[:i + 1]))
            embedded = torch.cat([embedded, model.pose_map(out[:, -1:])], dim=1)
    assert_relative_close(ours, out[0])


def test_audio_features_interpolate_wav2vec2s_features_to_the_frame_count(renderer: speech.SpeechRenderer) -> None:
    encoder = renderer.mesh_model.audio_encoder
    values = renderer.normalise(speech_like(0.5))
    with torch.no_grad():
        natural = encoder(values).last_hidden_state  # 320 samples per feature
        same = aniportrait.audio_features(encoder, values, natural.shape[1])
        assert_relative_close(same, natural)
        assert aniportrait.audio_features(encoder, values, 13).shape == (1, 13, 32)


def test_mesh_and_pose_models_load_the_published_layout(models: Path) -> None:
    state = torch.load(models / aniportrait.MESH_FILE, weights_only=True)
    assert "audio_encoder.encoder.pos_conv_embed.conv.weight_g" in state  # torch < 2.1's weight-norm names
    assert {"in_fn.weight", "out_fn.bias", "audio_encoder.masked_spec_embed"} <= set(state)
    pose = torch.load(models / aniportrait.POSE_FILE, weights_only=True)
    assert {"PPE.pe", "id_embed.weight", "pose_map.weight", "pose_map_r.bias",
            "transformer_decoder.layers.7.multihead_attn.in_proj_weight"} <= set(pose)
    model = aniportrait.load_audio_model(aniportrait.Audio2PoseModel, models / aniportrait.POSE_FILE,
                                         models / aniportrait.WAV2VEC_DIR)
    conv = model.audio_encoder.encoder.pos_conv_embed.conv
    torch.testing.assert_close(conv.parametrizations.weight.original0, pose[
        "audio_encoder.encoder.pos_conv_embed.conv.weight_g"], rtol=0, atol=0)


def test_loading_is_strict(models: Path, tmp_path: Path) -> None:
    wav2vec = models / aniportrait.WAV2VEC_DIR
    state = torch.load(models / aniportrait.MESH_FILE, weights_only=True)
    extra = tmp_path / "extra.pt"
    torch.save({**state, "decoder.weight": torch.zeros(1)}, extra)
    with pytest.raises(CheckpointError, match="unexpected"):
        aniportrait.load_audio_model(aniportrait.Audio2MeshModel, extra, wav2vec)
    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in state.items() if k != "audio_encoder.encoder.layers.0.attention.k_proj.bias"},
               partial)
    with pytest.raises(CheckpointError, match="missing"):
        aniportrait.load_audio_model(aniportrait.Audio2MeshModel, partial, wav2vec)
    heads_only = tmp_path / "heads.pt"  # no encoder copy: the folder's wav2vec2 weights are used
    torch.save({k: v for k, v in state.items() if not k.startswith("audio_encoder.")}, heads_only)
    model = aniportrait.load_audio_model(aniportrait.Audio2MeshModel, heads_only, wav2vec)
    folder = torch.load(wav2vec / "pytorch_model.bin", weights_only=True)
    torch.testing.assert_close(model.audio_encoder.feature_projection.projection.weight,
                               folder["feature_projection.projection.weight"], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------- projection

FOCAL = 1 / math.tan(math.radians(31.5))  # fovy 63
DEPTH_SCALE = 10000 / 9999  # far * near / (far - near): the original's w is z times this (see projection.perspective)


def test_projection_by_hand() -> None:
    f, q = FOCAL, DEPTH_SCALE
    height, width = 100, 200
    points = np.array([[[0.0, 0.0, -10.0], [1.0, 1.0, -10.0], [2.0, -1.0, -20.0]]])
    out = projection.project(points, np.eye(4), np.zeros((1, 6)), height, width)
    aspect = width / height
    expected = [[100, 50], [(1 + f / aspect / (10 * q)) / 2 * width, (1 - f / (10 * q)) / 2 * height],
                [(1 + f / aspect * 2 / (20 * q)) / 2 * width, (1 + f / (20 * q)) / 2 * height]]
    np.testing.assert_allclose(out[0], expected, rtol=1e-12)
    # a head pose: 90 degrees about z turns +x into +y; the translation moves the point before the camera
    turned = projection.project(np.array([[[1.0, 0.0, 0.0]]]), np.eye(4), np.array([[0, 0, 90, 0, 0, -10]]),
                                height, width)
    np.testing.assert_allclose(turned[0, 0], [100, (1 - f / (10 * q)) / 2 * height], rtol=1e-12)


def test_euler_angles_match_scipys_extrinsic_xyz() -> None:
    from scipy.spatial.transform import Rotation

    for angles in np.random.default_rng(0).uniform(-90, 90, (5, 3)):
        np.testing.assert_allclose(projection.euler_matrix(angles),
                                   Rotation.from_euler("xyz", angles, degrees=True).as_matrix(), atol=1e-12)


def test_smoothing_by_hand() -> None:
    spike = np.array([0, 0, 0, 6, 0, 0, 0], float)[:, None]
    assert projection.smooth(spike, 3)[:, 0].tolist() == [0, 0, 2, 2, 2, 0, 0]
    ramp = np.arange(5, dtype=float)[:, None]
    assert projection.smooth(ramp, 7)[:, 0].tolist() == [1.5, 2, 2, 2, 2.5]  # shorter windows at the ends
    np.testing.assert_array_equal(projection.smooth(ramp, 1), ramp)


# ---------------------------------------------------------------------------------------------------- geometry

def test_canonical_model_is_read_from_the_task_bundle(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tiny.write_geometry_task(tmp_path / "face.task", rng)
    model = geometry.read_canonical_model(tmp_path / "face.task")
    expected = tiny.synthetic_canonical_face(np.random.default_rng(1))
    np.testing.assert_allclose(model.points, expected, rtol=1e-6)  # stored as float32
    assert model.vertices.shape == (468, 5) and (model.weights > 0).sum() == 33
    (tmp_path / "broken.task").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="download the checkpoint"):
        geometry.read_canonical_model(tmp_path / "broken.task")


def test_weighted_procrustes_recovers_a_known_similarity() -> None:
    rng = np.random.default_rng(2)
    source = rng.normal(0, 5, (468, 3))
    known = np.eye(4)
    known[:3, :3] = 1.7 * projection.euler_matrix([10, -25, 40])
    known[:3, 3] = [1, -2, -30]
    target = source @ known[:3, :3].T + known[:3, 3]
    weights = np.where(rng.random(468) < 0.1, rng.random(468), 0)
    assert_relative_close(geometry.weighted_procrustes(source, target, weights), known, rtol=1e-9)


def test_metric_mesh_projects_back_onto_the_screen_landmarks(tmp_path: Path) -> None:
    """The mesh is the metric face in the canonical frame: the transform poses it and a textbook perspective camera
    puts every point back where the landmarker saw it (the original's projection, 1e-4 closer to the centre)."""
    tiny.write_geometry_task(tmp_path / "face.task", np.random.default_rng(3))
    model = geometry.read_canonical_model(tmp_path / "face.task")
    height, width = 120, 90
    pose = np.eye(4)
    pose[:3, 3] = [0.5, 1, -45]
    screen = projection.project(model.points[None], pose, np.zeros((1, 6)), height, width)[0]
    normalised = np.concatenate([screen / [width, height], np.zeros((468, 1))], axis=1)
    face = geometry.face_geometry(normalised, width, height, model)
    back = projection.project(face.mesh[None], face.transform, np.zeros((1, 6)), height, width)[0]
    centre = np.array([width / 2, height / 2])
    assert_relative_close(back, centre + (screen - centre) / DEPTH_SCALE)
    assert face.mesh.shape == (468, 3) and np.allclose(face.transform[3], [0, 0, 0, 1])


# ---------------------------------------------------------------------------------------------------- benchmark

def test_speech_benchmark_reports_time_per_audio_second() -> None:
    from engine import bench
    from engine.errors import InputError
    from engine.tasks import discover_tasks

    spec = discover_tasks()["face"]
    report = bench.run(spec, device="cpu", size="tiny", driver="audio", seconds=0.5)
    results = report["results"]
    assert results["frames"] == 13 and results["s_per_audio_second"] > 0 and results["audio2pose_s"] >= 0
    assert report["timings_s"]["audio_to_landmarks"] > 0
    with pytest.raises(InputError, match="driver"):
        bench.run(spec, device="cpu", size="tiny", driver="video")
