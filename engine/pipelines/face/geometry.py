"""MediaPipe's face geometry, computed from the 478 points: the pose-free metric face mesh (468 x 3) and the facial
transformation matrix, as mediapipe's geometry pipeline makes them (the Tasks API of mediapipe >= 1 returns the
matrix but not the mesh, which AniPortrait's audio path needs).

The canonical face model (mesh and Procrustes landmark weights) is read at run time from the face landmarker's .task
bundle (a zip holding `geometry_pipeline_metadata_landmarks.binarypb`); nothing of it is copied here. The steps follow
mediapipe/tasks/cc/vision/face_geometry/libs/geometry_pipeline.cc and procrustes_solver.cc (mediapipe v0.10): screen
landmarks -> a perspective camera frustum (vertical fov 63 deg, near 1, the face landmarker's environment) -> two
scale-estimation passes against the canonical model -> metric landmarks -> weighted orthogonal Procrustes (the pose)
-> the metric landmarks brought back into the canonical frame by the inverse pose (the mesh).
"""
from __future__ import annotations

import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import CheckpointError

METADATA_FILE = "geometry_pipeline_metadata_landmarks.binarypb"  # inside the .task bundle
MESH_POINTS = 468  # the geometry pipeline takes the face mesh without the 10 iris points
VERTEX_FLOATS = 5  # mediapipe's VERTEX_PT layout: x, y, z, u, v
FOV_Y_DEGREES, NEAR = 63.0, 1.0  # the face landmarker's perspective camera (face_landmarker_graph.cc environment)


@dataclass(frozen=True)
class CanonicalModel:
    """The canonical face model: vertex_buffer [468, 5] (x, y, z, u, v) in metric units (cm) and the Procrustes
    landmark weights [468] (zero for the landmarks outside the weighted basis)."""

    vertices: np.ndarray
    weights: np.ndarray

    @property
    def points(self) -> np.ndarray:
        return self.vertices[:, :3]


@dataclass(frozen=True)
class FaceGeometry:
    """mesh: [468, 3] metric face mesh in the canonical (pose-free) frame, what AniPortrait calls `lmks3d`.
    transform: [4, 4] canonical frame -> camera space (mediapipe's facial transformation matrix)."""

    mesh: np.ndarray
    transform: np.ndarray


# ---------------------------------------------------------------------------------------------------- reading

def read_canonical_model(task_file: str | Path) -> CanonicalModel:
    """The canonical model from a face landmarker .task bundle."""
    task_file = Path(task_file)
    try:
        with zipfile.ZipFile(task_file) as bundle:
            data = bundle.read(METADATA_FILE)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"The face landmarker bundle '{task_file.name}' holds no readable {METADATA_FILE} "
                              f"({exc}); download the checkpoint 'mediapipe_face' again.") from None
    return parse_metadata(data)


def parse_metadata(data: bytes) -> CanonicalModel:
    """GeometryPipelineMetadata (geometry_pipeline_metadata.proto): canonical_mesh = 1 (Mesh3d: vertex_buffer = 3,
    floats), procrustes_landmark_basis = 2 (WeightedLandmarkRef: landmark_id = 1, weight = 2)."""
    vertices: list[float] = []
    weights = np.zeros(MESH_POINTS, np.float64)
    for field, value in _fields(data):
        if field == 1:
            for mesh_field, mesh_value in _fields(value):
                if mesh_field == 3:
                    vertices += _floats(mesh_value)
        elif field == 2:
            ref = dict(_fields(value))
            landmark, weight = int(ref.get(1, 0)), _floats(ref.get(2, b"\0\0\0\0"))[0]
            if not 0 <= landmark < MESH_POINTS:
                raise CheckpointError(f"Face geometry metadata: landmark id {landmark} is out of range.")
            weights[landmark] = weight
    if len(vertices) != MESH_POINTS * VERTEX_FLOATS or not weights.any():
        raise CheckpointError(f"Face geometry metadata: expected a {MESH_POINTS}-vertex canonical mesh and Procrustes "
                              f"weights, found {len(vertices) // VERTEX_FLOATS} vertices.")
    return CanonicalModel(np.asarray(vertices, np.float64).reshape(MESH_POINTS, VERTEX_FLOATS), weights)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> list[tuple[int, object]]:
    """(field number, value) pairs of a protobuf message: varints as int, fixed32 as 4 bytes, length-delimited as
    bytes (wire types 0, 5, 2; fixed64 read and kept as bytes)."""
    found, at = [], 0
    try:
        while at < len(data):
            key, at = _varint(data, at)
            field, wire = key >> 3, key & 7
            if wire == 0:
                value, at = _varint(data, at)
            elif wire in (1, 5):
                width = 8 if wire == 1 else 4
                value, at = data[at:at + width], at + width
            elif wire == 2:
                length, at = _varint(data, at)
                value, at = data[at:at + length], at + length
            else:
                raise ValueError(f"wire type {wire}")
            found.append((field, value))
    except (IndexError, ValueError) as exc:
        raise CheckpointError(f"Face geometry metadata is not a readable protobuf message ({exc}).") from None
    return found


def _floats(value: object) -> list[float]:
    """A packed run of little-endian float32 (or one fixed32 value)."""
    raw = bytes(value)  # type: ignore[arg-type]
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# ---------------------------------------------------------------------------------------------------- geometry

def face_geometry(normalised: np.ndarray, width: int, height: int, model: CanonicalModel) -> FaceGeometry:
    """Screen landmarks as mediapipe gives them ([>= 468, 3]: x, y in [0, 1] of the picture, z in x's scale) -> the
    metric mesh and the transformation matrix (float64)."""
    screen = np.array(normalised[:MESH_POINTS, :3], np.float64)
    left, right, bottom, top = _frustum(width, height)
    # ProjectXY (origin at the top-left corner)
    screen[:, 0] = screen[:, 0] * (right - left) + left
    screen[:, 1] = (1.0 - screen[:, 1]) * (top - bottom) + bottom
    screen[:, 2] = screen[:, 2] * (right - left)
    depth_offset = screen[:, 2].mean()

    intermediate = screen.copy()
    intermediate[:, 2] *= -1  # ChangeHandedness
    first_scale = _scale(model, intermediate)
    intermediate = _unproject(screen, depth_offset, first_scale)
    second_scale = _scale(model, intermediate)
    metric = _unproject(screen, depth_offset, first_scale * second_scale)

    transform = weighted_procrustes(model.points, metric, model.weights)
    inverse = np.linalg.inv(transform)
    mesh = metric @ inverse[:3, :3].T + inverse[:3, 3]
    return FaceGeometry(mesh, transform)


def _frustum(width: int, height: int) -> tuple[float, float, float, float]:
    height_at_near = 2.0 * NEAR * math.tan(0.5 * math.radians(FOV_Y_DEGREES))
    width_at_near = width * height_at_near / height
    return -0.5 * width_at_near, 0.5 * width_at_near, -0.5 * height_at_near, 0.5 * height_at_near


def _unproject(screen: np.ndarray, depth_offset: float, scale: float) -> np.ndarray:
    """MoveAndRescaleZ, UnprojectXY, ChangeHandedness."""
    points = screen.copy()
    points[:, 2] = (points[:, 2] - depth_offset + NEAR) / scale
    points[:, :2] *= points[:, 2:3] / NEAR
    points[:, 2] *= -1
    return points


def _scale(model: CanonicalModel, landmarks: np.ndarray) -> float:
    """EstimateScale: the length of the first column of the canonical -> landmarks similarity transform."""
    return float(np.linalg.norm(weighted_procrustes(model.points, landmarks, model.weights)[:3, 0]))


def weighted_procrustes(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The 4x4 similarity (scale * rotation, translation; no reflection) that best maps `source` [N, 3] onto `target`
    [N, 3] in the weighted least-squares sense (procrustes_solver.cc's SolveWeightedOrthogonalProblem)."""
    sqrt_w = np.sqrt(weights)[:, None]
    total = float(weights.sum())
    weighted_source, weighted_target = source * sqrt_w, target * sqrt_w
    centre = (weighted_source * sqrt_w).sum(axis=0) / total
    centred = weighted_source - centre * sqrt_w
    u, _, vt = np.linalg.svd(weighted_target.T @ centred)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        u[:, 2] *= -1
    rotation = u @ vt
    scale = float(((centred @ rotation.T) * weighted_target).sum() / (centred * weighted_source).sum())
    linear = scale * rotation
    translation = ((weighted_target - weighted_source @ linear.T) * sqrt_w).sum(axis=0) / total
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = linear, translation
    return transform
