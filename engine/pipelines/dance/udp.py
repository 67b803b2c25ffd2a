"""Pose sequences for CoNR: UDP frames (`.npz`, key 'i'), pose pictures for the parser mode, or a dance video.

A sequence is a folder, a `.zip`, or one frame file (a one-frame sequence). Frames are read lazily, one at a time,
straight from the folder or from the archive's members (nothing is extracted); a zip is opened, and its index read,
once for the sequence's life. Frames sort numerically ("2.npz" before "10.npz"); the original sorted names as
strings, which scrambles any sequence past frame 9.
Every frame's header is checked when the sequence is opened (array shape and dtype, picture size; no array is
inflated), so bad input fails before any model runs, with the file named. What a sequence may cost comes from
`engine.limits`: pixels per frame, members and unpacked bytes per zip, frames per video.
"""
from __future__ import annotations

import contextlib
import io
import math
import zipfile
import zlib
from pathlib import Path
from typing import IO, Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from engine import limits, media
from engine.archives import CHUNK, IMAGE_EXTENSIONS, FrameFiles
from engine.errors import InputError
from engine.pipelines.dance.networks import ResEncUnet, normalize_input
from engine.pipelines.dance.sheets import CropBox, as_rgba, crop_square, premultiply, square_box

UDP_EXTENSIONS = (".npz",)
UDP_KEY = "i"
MAX_NPY_HEADER = 10_000  # numpy's own default bound on an .npy header


def check_frame_pixels(height: int, width: int, what: str) -> None:
    """Refuse a pose frame over the pixel limit (the output is pasted at the pose frame's size)."""
    max_pixels = limits.current().max_image_pixels
    if height * width > max_pixels:
        raise InputError(f"{what} is {width}x{height}, more than {max_pixels / 1e6:g} megapixels (the limit is set "
                         "with --max-image-megapixels). Downscale the poses: CoNR works at 256x256.")


class UDPSequence(Sequence[np.ndarray]):
    """UDP frames as float32 HxWx4 arrays (XYZ surface coordinates in [0, 1] and alpha)."""

    def __init__(self, path: str | Path) -> None:
        self.files = FrameFiles(path, UDP_EXTENSIONS, "UDP pose frames")
        self.frame_size = _same_size(self.files, self._header)

    def _header(self, index: int) -> tuple[int, ...]:
        with _udp_array(self.files, index) as (shape, _, _, _):
            return shape

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        name = self.files.names[index]
        with _udp_array(self.files, index) as (shape, fortran, dtype, stream):
            frame = _read_array(stream, shape, fortran, dtype, name)
        return check_udp_frame(frame, name)

    def close(self) -> None:
        self.files.close()


class PoseImageSequence(Sequence[np.ndarray]):
    """Pose pictures (e.g. frames of an anime dance video) as uint8 HxWx3/4 RGB(A) arrays."""

    def __init__(self, path: str | Path) -> None:
        self.files = FrameFiles(path, IMAGE_EXTENSIONS, "pose pictures")
        self.frame_size = _same_size(self.files, self._header)

    def _header(self, index: int) -> tuple[int, int]:
        with self.files.reading(index) as stream:
            return _picture_size(stream, self.files.names[index])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        name = self.files.names[index]
        data = self.files.read(index)
        _picture_size(data, name)  # the file may have changed since it was opened: check before decoding
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputError(f"Pose picture {name} could not be decoded; use PNG or JPEG.")
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return image

    def close(self) -> None:
        self.files.close()


class VideoPoses(Sequence[np.ndarray]):
    """The frames of a dance video as pose pictures (HxWx3 uint8 RGB), decoded in order as they are asked for.

    Only the frames before `stop` (the job's frame_end) count: nothing past the last rendered frame is decoded, and
    no frame is written anywhere. The length comes from the video's packets (no decoding), up to the frame limit."""

    def __init__(self, path: str | Path, stop: int | None = None) -> None:
        self.path = Path(path)
        info = media.video_info(self.path)
        self.frame_size = info.height, info.width
        check_frame_pixels(info.height, info.width, f"Dance video '{self.path.name}'")
        self._length = _video_length(self.path, info, stop)
        self._frames: Iterator[np.ndarray] | None = None
        self._next = 0  # index of the frame the decoder yields next
        self._last: np.ndarray | None = None

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not 0 <= index < self._length:
            raise IndexError(index)
        if self._frames is None or index < self._next - 1:  # going back: decode again from the start
            self.close()
            self._frames, self._next = media.iter_video(self.path), 0
        while self._next <= index:
            self._last = next(self._frames, None)
            if self._last is None:
                raise InputError(f"'{self.path.name}' ended after {self._next} frames although it holds "
                                 f"{self._length}; the video is damaged. Re-export it.")
            self._next += 1
        return self._last  # type: ignore[return-value]

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()  # type: ignore[attr-defined]
            self._frames = None


def _video_length(path: Path, info: media.VideoInfo, stop: int | None) -> int:
    """Frames before `stop` (all when None), refused past the frame limit before any is decoded."""
    max_frames = limits.current().max_video_frames
    if stop is None and info.frames > max_frames:
        count = info.frames
    else:
        wanted = max_frames + 1 if stop is None else min(stop, max_frames + 1)
        count = media.count_video_frames(path, wanted)
    if count > max_frames:
        raise InputError(f"Dance video '{path.name}' is too long (at least {count} frames; at most {max_frames} are "
                         "decoded from one video, set with --max-video-frames). Trim it or set frame_end.")
    return count


def open_pose_sequence(path: str | Path, pose_mode: str) -> UDPSequence | PoseImageSequence:
    """Open a folder/.zip of UDP `.npz` frames (pose_mode "udp") or of pose pictures ("parser")."""
    return UDPSequence(path) if pose_mode == "udp" else PoseImageSequence(path)


def _same_size(files: FrameFiles, header: Callable[[int], tuple[int, ...]]) -> tuple[int, int]:
    """Check every frame's header; all frames must share the first frame's height and width."""
    first = tuple(header(0)[:2])
    for index in range(1, len(files)):
        size = tuple(header(index)[:2])
        if size != first:
            raise InputError(f"Pose frame {files.names[index]} is {size[1]}x{size[0]} but "
                             f"{files.names[0]} is {first[1]}x{first[0]}; all frames must have one size.")
    return first  # type: ignore[return-value]


def _picture_size(source: IO[bytes] | bytearray, name: str) -> tuple[int, int]:
    """(height, width) of a pose picture from its header, refused over the pixel limit."""
    try:
        with Image.open(source if hasattr(source, "read") else io.BytesIO(source)) as image:
            height, width = image.height, image.width
    except Image.DecompressionBombError:
        height = width = math.isqrt(limits.current().max_image_pixels) + 1
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"Pose picture {name} is not a readable image ({exc}).") from exc
    check_frame_pixels(height, width, f"Pose picture {name}")
    return height, width


@contextlib.contextmanager
def _udp_array(files: FrameFiles, index: int) -> Iterator[tuple[tuple[int, ...], bool, np.dtype, IO[bytes]]]:
    """The checked header of a frame's 'i' array (shape, fortran order, dtype) and the stream at its data.

    Only the .npy header is read here: a forged header claiming a huge array is refused before anything is
    allocated or inflated."""
    name = files.names[index]
    with files.reading(index) as stream:
        try:
            with zipfile.ZipFile(stream) as npz:
                if f"{UDP_KEY}.npy" not in npz.namelist():
                    keys = ", ".join(n.removesuffix(".npy") for n in npz.namelist()) or "none"
                    raise InputError(f"Pose frame {name} has no array '{UDP_KEY}' (found: {keys}); UDP frames "
                                     f"store an HxWx4 float array under '{UDP_KEY}', as MMD2UDP writes them.")
                with npz.open(f"{UDP_KEY}.npy") as member:
                    shape, fortran, dtype = _npy_header(member)
                    _check_udp_layout(shape, dtype, name)
                    yield shape, fortran, dtype, member
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise InputError(f"Pose frame {name} is not a readable .npz file ({exc}); "
                             "re-export the sequence.") from exc


def _npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER)
    raise ValueError(f".npy format {version[0]}.{version[1]} is not supported")


def _read_array(stream: IO[bytes], shape: tuple[int, ...], fortran: bool, dtype: np.dtype,
                name: str) -> np.ndarray:
    """Exactly the data a checked header declares, read in chunks into one allocation."""
    flat = np.empty(math.prod(shape), dtype)
    view = memoryview(flat.view(np.uint8))
    done = 0
    while done < len(view):
        got = stream.readinto(view[done:done + CHUNK])
        if not got:
            raise InputError(f"Pose frame {name} is truncated ({done} of {len(view)} bytes); re-export the sequence.")
        done += got
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


def _check_udp_layout(shape: tuple[int, ...], dtype: np.dtype, name: str) -> None:
    if len(shape) != 3 or shape[2] != 4 or min(shape[:2]) < 2:
        raise InputError(f"Pose frame {name} holds an array of shape {tuple(shape)}; UDP frames must be "
                         "HxWx4 (X, Y, Z surface coordinates and alpha).")
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"Pose frame {name} holds {dtype} values; UDP frames must be floats in [0, 1].")
    check_frame_pixels(shape[0], shape[1], f"Pose frame {name}")


def check_udp_frame(frame: np.ndarray, name: str) -> np.ndarray:
    """Validate one UDP frame (any source) and return it as float32."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"Pose frame {name} is not an array; UDP frames are HxWx4 float arrays.")
    _check_udp_layout(frame.shape, frame.dtype, name)
    frame = frame.astype(np.float32, copy=False)
    if not np.isfinite(frame).all():
        raise InputError(f"Pose frame {name} holds NaN or infinite values; UDP frames hold finite coordinates and "
                         "alpha in [0, 1]. Re-export the sequence.")
    return frame


def prepare_udp_frame(udp: np.ndarray, size: int) -> tuple[np.ndarray, CropBox | None]:
    """UDP frame -> (target-encoder input [4,S,S]: XYZ*alpha and alpha, crop box).

    As the original: the crop comes from the frame quantised to uint8; the coordinates are resized
    nearest-exact from the float frame, the alpha area/linear from the uint8 one.
    """
    quantised = (udp * 255).clip(0, 255).astype(np.uint8)
    box = square_box(quantised[..., 3])
    if box is None:
        return np.zeros((4, size, size), np.float32), None
    xyz = crop_square(udp, box, size, nearest=True)[..., :3]
    alpha = crop_square(quantised, box, size)[..., 3:].astype(np.float32) / 255.0
    return np.concatenate([xyz * alpha, alpha], axis=-1).transpose(2, 0, 1), box


def prepare_pose_image(image: np.ndarray, size: int, name: str) -> tuple[np.ndarray, CropBox | None]:
    """Pose picture -> (premultiplied RGB [3,S,S] in [0, 1], crop box); RGB pictures crop the whole frame."""
    rgba = as_rgba(image, f"Pose picture {name}")
    box = square_box(rgba[..., 3])
    if box is None:
        return np.zeros((3, size, size), np.float32), None
    square = crop_square(premultiply(rgba), box, size)
    return square[..., :3].transpose(2, 0, 1).astype(np.float32) / 255.0, box


def predict_udp(parser: ResEncUnet, rgb: torch.Tensor) -> torch.Tensor:
    """Parser mode: premultiplied pose RGB [N,3,S,S] -> target-encoder input [N,4,S,S] (XYZ*alpha, alpha).

    The parser's 4 output channels are clamped to [0, 1] and split into XYZ (0:3) and alpha (3:4).
    The CoNR repository kept the parser output as [N, M, C, H, W] (M = pose pictures per sample) and then
    sliced `[:, 0:3]` / `[:, 3:4]`, which cut the M axis instead of the channels (alpha came out empty);
    the IJCAI2023 repository selects picture 0 first. Here the output is [N, C, H, W] and the slices are
    taken on the channel axis.
    """
    udp = parser(normalize_input(rgb))[0].clamp(0, 1)
    xyz, alpha = udp[:, 0:3], udp[:, 3:4]
    return torch.cat([xyz * alpha, alpha], dim=1)
