"""What a pose sequence may cost: header checks before any array is inflated, archive limits from the index, streamed
members, one open per archive, and dance videos decoded only as far as the frame range."""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine import Engine, media
from engine.errors import InputError
from engine.limits import Limits, applied
from engine.pipelines.dance import job as dance_job
from engine.pipelines.dance import udp
from engine.pipelines.dance.tiny import synthetic_udp_frames
from engine.archives import IMAGE_EXTENSIONS, FrameFiles, read_capped
from engine.pipelines.dance.udp import UDPSequence, VideoPoses

FAST = {"working_size": 128}


def _npz(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, i=array)
    return buffer.getvalue()


def _forged_npz(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """An .npz whose 'i.npy' header claims `shape` but holds no data: nothing that large is ever allocated."""
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": descr, "fortran_order": False, "shape": shape})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as npz:
        npz.writestr("i.npy", npy.getvalue() + b"\0" * 64)
    return buffer.getvalue()


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def no_array_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any frame's array data is read."""
    def refuse(*args, **kwargs):
        raise AssertionError("the array was read: the refusal must come from the header")
    monkeypatch.setattr(udp, "_read_array", refuse)
    monkeypatch.setattr(np, "load", refuse)


# ---------------------------------------------------------------------------------------------------- npz headers

def test_forged_header_claiming_a_huge_array_is_refused_from_the_header(tmp_path, no_array_reads):
    path = _zip(tmp_path / "poses.zip", {"0.npz": _forged_npz((11000, 11000, 4))})
    assert path.stat().st_size < 10_000
    with pytest.raises(InputError, match=r"0.npz is 11000x11000, more than 80 megapixels"):
        UDPSequence(path)


@pytest.mark.parametrize("shape, descr, match", [
    ((16, 12, 4), "<i4", "must be floats"),
    ((16, 12, 3), "<f4", r"shape \(16, 12, 3\)"),
])
def test_wrong_layouts_are_refused_from_the_header(tmp_path, no_array_reads, shape, descr, match):
    with pytest.raises(InputError, match=match):
        UDPSequence(_zip(tmp_path / "poses.zip", {"0.npz": _forged_npz(shape, descr)}))


def test_the_pixel_limit_is_the_engines(tmp_path):
    path = _zip(tmp_path / "poses.zip", {"0.npz": _npz(np.zeros((16, 12, 4), np.float32))})
    assert UDPSequence(path).frame_size == (16, 12)
    with applied(Limits(max_image_pixels=100)), pytest.raises(InputError, match="12x16, more than 0.0001 megapixels"):
        UDPSequence(path)


def test_truncated_array_data_is_an_input_error(tmp_path):
    poses = UDPSequence(_zip(tmp_path / "poses.zip", {"0.npz": _forged_npz((16, 12, 4))}))  # 64 of 3072 bytes
    with pytest.raises(InputError, match="0.npz is truncated"):
        poses[0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_frames_are_refused(tmp_path, bad):
    frame = synthetic_udp_frames(1, (16, 12))[0]
    frame[5, 5, 0] = bad
    poses = UDPSequence(_zip(tmp_path / "poses.zip", {"0.npz": _npz(synthetic_udp_frames(1, (16, 12))[0]),
                                                      "1.npz": _npz(frame)}))
    assert np.isfinite(poses[0]).all()
    with pytest.raises(InputError, match="1.npz holds NaN or infinite values"):
        poses[1]


def test_frames_round_trip_in_any_float_layout(tmp_path):
    frame = synthetic_udp_frames(1, (16, 12))[0]
    members = {"0.npz": _npz(frame), "1.npz": _npz(np.asfortranarray(frame.astype(">f8")))}
    poses = UDPSequence(_zip(tmp_path / "poses.zip", members))
    for i in range(2):
        assert poses[i].dtype == np.float32 and np.array_equal(poses[i], frame)


# ---------------------------------------------------------------------------------------------------- archives

def test_archive_over_the_byte_limit_is_refused_from_its_index(tmp_path, monkeypatch):
    path = _zip(tmp_path / "poses.zip", {f"{i}.npz": _npz(np.zeros((64, 64, 4), np.float32)) for i in range(3)})
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: pytest.fail("a member was inflated"))
    with applied(Limits(max_archive_bytes=100_000)), pytest.raises(InputError, match="unpacks to 0.2 MB"):
        UDPSequence(path)


def test_archive_over_the_member_limit_is_refused(tmp_path):
    path = _zip(tmp_path / "poses.zip", {f"{i}.npz": _npz(np.zeros((2, 2, 4), np.float32)) for i in range(5)})
    with applied(Limits(max_archive_members=4)), pytest.raises(InputError, match="holds 5 files; at most 4"):
        UDPSequence(path)


def _patch_declared_size(path: Path, size: int) -> None:
    """Make the central directory claim `size` unpacked bytes for the (only) member."""
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", size)
    path.write_bytes(bytes(data))


def test_member_whose_declared_size_lies_is_not_inflated_past_it(tmp_path, monkeypatch):
    """A member declaring 2 kB that inflates to 4 MB: read in chunks, stopped at the declared size."""
    path = _zip(tmp_path / "poses.zip", {"0.png": b"\0" * (4 << 20)})
    _patch_declared_size(path, 2000)
    inflated = []  # every inflated byte goes through the CRC check, the last chunk included (which then fails)
    real_crc = zipfile.ZipExtFile._update_crc
    monkeypatch.setattr(zipfile.ZipExtFile, "_update_crc",
                        lambda self, data: inflated.append(len(data)) or real_crc(self, data))
    files = FrameFiles(path, IMAGE_EXTENSIONS, "pose pictures")
    with pytest.raises(InputError, match="0.png"):
        files.read(0)
    assert 0 < sum(inflated) <= 2000


def test_read_capped_stops_once_past_the_limit():
    class Endless(io.RawIOBase):
        handed = 0

        def read(self, n=-1):
            if self.handed > 64 << 20:  # so that a reader with no limit ends (and the test fails) instead of hanging
                return b""
            self.handed += n
            return b"\0" * n

    stream = Endless()
    with pytest.raises(InputError, match="more than the 10000 bytes it declares"):
        read_capped(stream, 10_000, "0.png")
    assert stream.handed == 10_001
    assert read_capped(io.BytesIO(b"x" * 10_000), 10_000, "0.png") == b"x" * 10_000


def test_a_long_zip_is_opened_once(tmp_path, monkeypatch):
    """Validation is linear: one open of the archive for the sequence's life, not one per frame."""
    frame = _npz(np.zeros((2, 2, 4), np.float32))
    path = _zip(tmp_path / "poses.zip", {f"{i}.npz": frame for i in range(4000)}, zipfile.ZIP_STORED)
    opened = []
    real_init = zipfile.ZipFile.__init__

    def spy(self, file, *args, **kwargs):
        if isinstance(file, (str, Path)):
            opened.append(file)
        real_init(self, file, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", spy)
    poses = UDPSequence(path)
    assert len(poses) == 4000 and poses[3999].shape == (2, 2, 4) and poses[17].shape == (2, 2, 4)
    assert len(opened) == 1
    poses.close()


# ---------------------------------------------------------------------------------------------------- single files

def test_a_single_npz_is_a_one_frame_sequence(tmp_path):
    frame = synthetic_udp_frames(1, (16, 12))[0]
    path = tmp_path / "pose.npz"
    path.write_bytes(_npz(frame))
    assert dance_job._pose_mode(path) == "udp"
    poses = UDPSequence(path)
    assert len(poses) == 1 and poses.files.names == ["pose.npz"] and np.array_equal(poses[0], frame)


# ---------------------------------------------------------------------------------------------------- videos

@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "dance.mp4"
    rng = np.random.default_rng(0)
    media.write_mp4(path, [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(12)], fps=10)
    return path


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the video frames decoded (through media.iter_video)."""
    frames: list[int] = []
    real = media.iter_video

    def counting(path):
        for frame in real(path):
            frames.append(1)
            yield frame

    monkeypatch.setattr(media, "iter_video", counting)
    return frames


def test_video_poses_decode_only_up_to_frame_end(video, decoded):
    poses = VideoPoses(video, stop=3)
    assert len(poses) == 3 and poses.frame_size == (32, 48) and not decoded
    assert poses[1].shape == (32, 48, 3) and poses[2].shape == (32, 48, 3)
    assert len(decoded) == 3
    with pytest.raises(IndexError):
        poses[3]
    poses.close()
    assert len(VideoPoses(video)) == 12


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])  # WebM stores no frame count: counted from its packets
def test_dance_video_frame_limit(tmp_path, decoded, suffix):
    path = tmp_path / f"dance{suffix}"
    frames = [np.full((32, 48, 4), 40 * k, np.uint8) for k in range(6)]
    if suffix == ".mp4":
        media.write_mp4(path, [f[..., :3] for f in frames], fps=10)
    else:
        media.write_webm_alpha(path, frames, fps=10)
    with applied(Limits(max_video_frames=4)):
        with pytest.raises(InputError, match=r"too long .at least [56] frames; at most 4"):
            VideoPoses(path)
        assert len(VideoPoses(path, stop=4)) == 4  # a range within the limit is fine
    assert not decoded


@pytest.fixture(scope="module")
def sheet_files(tiny_hub: Path) -> list[Path]:
    folder = next(tiny_hub.glob("spaces--nev--CoNR/snapshots/*")) / "character_sheet_ponytail_example"
    return sorted(folder.glob("*.png"))[:2]


def test_dance_job_decodes_only_the_range_and_writes_no_frames(session_engine: Engine, sheet_files, video,
                                                               decoded) -> None:
    result = session_engine.run("dance", {"sheets": sheet_files, "poses": video},
                                {**FAST, "format": "png", "frame_end": 2})
    assert len(list(result.files["frames"].glob("*.png"))) == 2
    assert len(decoded) == 2
    assert not list(result.folder.rglob("video_frames"))


def test_dance_job_refuses_a_long_video_before_decoding(session_engine: Engine, sheet_files, video, decoded,
                                                        monkeypatch) -> None:
    monkeypatch.setattr(session_engine.config, "limits", Limits(max_video_frames=5))
    with pytest.raises(InputError, match="dance.mp4' is too long"):
        session_engine.run("dance", {"sheets": sheet_files, "poses": video}, FAST)
    assert not decoded


def test_dance_job_takes_a_single_npz(session_engine: Engine, sheet_files, tmp_path) -> None:
    path = tmp_path / "pose.npz"
    path.write_bytes(_npz(synthetic_udp_frames(1, (128, 96))[0]))
    result = session_engine.run("dance", {"sheets": sheet_files, "poses": path}, {**FAST, "format": "png"})
    assert len(list(result.files["frames"].glob("*.png"))) == 1


def test_crop_output_is_capped_at_the_pose_frame_size(session_engine: Engine, sheet_files, tmp_path) -> None:
    path = _zip(tmp_path / "wide.zip", {"0.npz": _npz(np.zeros((4, 5000, 4), np.float32))})
    with pytest.raises(InputError, match="5000x4; output_size 'crop'"):
        session_engine.run("dance", {"sheets": sheet_files, "poses": path}, FAST)
