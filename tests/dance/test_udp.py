"""Pose sequences: numeric order, lazy reads, safe zips, and an InputError for each kind of bad input."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.errors import InputError
from engine.pipelines.dance.networks import DanceNetConfig, normalize_input
from engine.pipelines.dance.tiny import random_networks, synthetic_udp_frames
from engine.archives import natural_key
from engine.pipelines.dance.udp import (PoseImageSequence, UDPSequence, open_pose_sequence, predict_udp,
                                        prepare_udp_frame)


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _frame(value: float, h: int = 16, w: int = 12, channels: int = 4) -> np.ndarray:
    frame = np.zeros((h, w, channels), np.float32)
    frame[4:12, 3:9] = value
    return frame


def _folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_natural_key_orders_numbers_by_value():
    assert sorted(["10.npz", "2.npz", "1.npz"], key=natural_key) == ["1.npz", "2.npz", "10.npz"]


def test_tiny_zip_reads_in_numeric_order(tiny_space):
    poses = UDPSequence(tiny_space / "poses_template.zip")
    assert len(poses) == 12 and poses.frame_size == (128, 96)
    assert poses.files.names[:3] == ["0.npz", "1.npz", "2.npz"] and poses.files.names[-1] == "11.npz"
    # the synthetic figure drifts right 2 px per frame, so centroids must increase in sequence order
    centroids = [np.nonzero(poses[i][..., 3])[1].mean() for i in range(len(poses))]
    assert np.all(np.diff(centroids) > 1.5)


def test_zip_ignores_directories_macos_metadata_and_hidden_files(tmp_path):
    path = tmp_path / "poses.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("seq/", b"")
        archive.writestr("seq/1.npz", _npz(i=_frame(0.5)))
        archive.writestr("seq/0.npz", _npz(i=_frame(0.25)))
        archive.writestr("__MACOSX/seq/._0.npz", b"junk")
        archive.writestr("seq/.hidden.npz", b"junk")
        archive.writestr("seq/readme.txt", b"hello")
    poses = UDPSequence(path)
    assert poses.files.names == ["seq/0.npz", "seq/1.npz"]
    assert poses[0].dtype == np.float32 and poses[0].max() == np.float32(0.25)


def test_folder_frames_are_read_lazily(tmp_path):
    folder = _folder(tmp_path, {"0.npz": _npz(i=_frame(0.25)), "1.npz": _npz(i=_frame(0.5))})
    poses = UDPSequence(folder)
    (folder / "1.npz").write_bytes(_npz(i=_frame(0.75)))  # changed after opening: read on access
    assert poses[1].max() == np.float32(0.75)


@pytest.mark.parametrize("files, match", [
    ({"0.npz": _npz(i=_frame(0.5)), "1.npz": b"not a zip"}, "1.npz is not a readable"),
    ({"0.npz": _npz(x=_frame(0.5))}, "0.npz has no array 'i'"),
    ({"0.npz": _npz(i=_frame(0.5, channels=3))}, r"0.npz holds an array of shape \(16, 12, 3\)"),
    ({"0.npz": _npz(i=_frame(0.5)), "1.npz": _npz(i=_frame(0.5, h=20))}, "1.npz is 12x20 but 0.npz is 12x16"),
    ({"0.npz": _npz(i=(_frame(0.5) * 255).astype(np.uint8))}, "must be floats"),
    ({"notes.txt": b"hello"}, "holds no UDP pose frames"),
])
def test_bad_udp_folders_raise_input_errors(tmp_path, files, match):
    with pytest.raises(InputError, match=match):
        UDPSequence(_folder(tmp_path, files))


def test_empty_zip_and_missing_path_raise_input_errors(tmp_path):
    path = tmp_path / "empty.zip"
    zipfile.ZipFile(path, "w").close()
    with pytest.raises(InputError, match="holds no UDP pose frames"):
        UDPSequence(path)
    with pytest.raises(InputError, match="neither a folder nor a .zip"):
        UDPSequence(tmp_path / "missing")


def test_pose_pictures_are_rgb_ordered(tmp_path):
    picture = np.zeros((10, 8, 4), np.uint8)
    picture[..., 0], picture[..., 3] = 255, 255  # red, opaque
    cv2.imwrite(str(tmp_path / "0.png"), cv2.cvtColor(picture, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(tmp_path / "1.jpg"), cv2.cvtColor(picture[..., :3], cv2.COLOR_RGB2BGR))
    poses = open_pose_sequence(tmp_path, "parser")
    assert isinstance(poses, PoseImageSequence) and poses.frame_size == (10, 8)
    assert poses[0].shape == (10, 8, 4) and (poses[0][..., 0] == 255).all() and (poses[0][..., 2] == 0).all()
    assert poses[1].shape == (10, 8, 3) and poses[1][..., 0].min() > 200


def test_bad_pose_picture_raises_input_error(tmp_path):
    (tmp_path / "0.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="0.png is not a readable image"):
        PoseImageSequence(tmp_path)


def test_prepare_udp_frame_premultiplies_coordinates():
    frame = synthetic_udp_frames(1, (64, 48))[0]
    target, box = prepare_udp_frame(frame, 128)
    assert target.shape == (4, 128, 128) and box.frame_h == 64 and box.frame_w == 48
    alpha = target[3]
    assert (target[:3][:, alpha == 0] == 0).all() and alpha.max() == 1.0
    # coordinates are resized nearest-exact: inside the figure they are values of the source frame
    source_x = set(np.unique(frame[..., 0]))
    assert set(np.unique(target[0][alpha == 1])) <= source_x
    empty, none = prepare_udp_frame(np.zeros((32, 32, 4), np.float32), 128)
    assert none is None and not empty.any()


def test_predict_udp_slices_channels_not_pictures():
    parser = random_networks(DanceNetConfig.tiny(), seed=2)["udpparsernet"].eval()
    rgb = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        target = predict_udp(parser, rgb)
        raw = parser(normalize_input(rgb))[0].clamp(0, 1)
    assert target.shape == (1, 4, 128, 128)
    torch.testing.assert_close(target[:, 3:], raw[:, 3:])
    torch.testing.assert_close(target[:, :3], raw[:, :3] * raw[:, 3:])
