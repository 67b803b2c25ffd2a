"""AniPortrait's landmark projection (MOFA-Video-Hybrid/aniportrait/src/utils/pose_util.py@3ad3b546da4c): a metric face
mesh posed by the facial transformation matrix and a per-frame head pose (Euler angles in degrees, translation),
projected by a perspective camera of vertical fov 63 deg, near 1, far 10000 into picture pixels; the head-pose
smoothing (a centred moving average, shorter at the ends)."""
from __future__ import annotations

import math

import numpy as np

FOV_Y_DEGREES, NEAR, FAR = 63.0, 1.0, 10000.0  # create_perspective_matrix in pose_util.py


def perspective(aspect: float) -> np.ndarray:
    """The 4x4 projection as the original applies it (column vectors: clip = P @ [x, y, z, 1]), y flipped for a
    top-left picture origin.

    pose_util.py fills an OpenGL (column-major) array, reads it row-major and transposes it, then multiplies row
    vectors by it (`points @ P`): the transpose of the OpenGL matrix is applied. So w = z * far * near / (near - far)
    (= -1.0001 z) instead of -z, and z gets the -1 instead: the projected points sit 1e-4 of their distance closer to
    the picture's centre than a textbook projection would put them. Reproduced here."""
    f = 1.0 / math.tan(math.radians(FOV_Y_DEGREES) / 2)
    matrix = np.zeros((4, 4))
    matrix[0, 0] = f / aspect
    matrix[1, 1] = -f
    matrix[2, 2] = (NEAR + FAR) / (NEAR - FAR)
    matrix[2, 3] = -1.0
    matrix[3, 2] = FAR * NEAR / (NEAR - FAR)
    return matrix


def euler_matrix(angles_degrees: np.ndarray) -> np.ndarray:
    """3x3 rotation of extrinsic x, then y, then z rotations (scipy's Rotation.from_euler('xyz', degrees=True))."""
    ax, ay, az = np.radians(np.asarray(angles_degrees, np.float64))
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def pose_matrix(pose: np.ndarray) -> np.ndarray:
    """[6] (Euler x, y, z in degrees, translation x, y, z) -> 4x4."""
    matrix = np.eye(4)
    matrix[:3, :3] = euler_matrix(pose[:3])
    matrix[:3, 3] = pose[3:6]
    return matrix


def project(meshes: np.ndarray, transform: np.ndarray, poses: np.ndarray, height: int, width: int) -> np.ndarray:
    """meshes [L, N, 3] metric points, transform [4, 4], poses [L, 6] -> [L, N, 2] picture pixels (x, y)."""
    camera = perspective(width / height)
    out = np.empty(meshes.shape[:2] + (2,))
    for k, (mesh, pose) in enumerate(zip(meshes, poses)):
        homogeneous = np.concatenate([mesh, np.ones((len(mesh), 1))], axis=1)
        clip = homogeneous @ (camera @ np.asarray(transform, np.float64) @ pose_matrix(pose)).T
        ndc = clip[:, :2] / clip[:, 3:4]
        out[k, :, 0] = (ndc[:, 0] + 1) * 0.5 * width
        out[k, :, 1] = (ndc[:, 1] + 1) * 0.5 * height
    return out


def smooth(sequence: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` frames (window // 2 each side), truncated at the ends; window <= 1 keeps
    the sequence (smooth_pose_seq in pose_util.py)."""
    sequence = np.asarray(sequence, np.float64)
    half = max(window, 1) // 2
    out = np.empty_like(sequence)
    for k in range(len(sequence)):
        out[k] = sequence[max(0, k - half):k + half + 1].mean(axis=0)
    return out
