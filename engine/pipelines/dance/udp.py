"""Pose sequences for CoNR: UDP frames (`.npz`, key 'i') or pose pictures for the parser mode.

A sequence is a folder or a `.zip`. Frames are read lazily, one at a time, straight from the folder or
from the archive's members in memory (nothing is extracted). Frames sort numerically ("2.npz" before
"10.npz"); the original sorted names as strings, which scrambles any sequence past frame 9.
Every frame is checked when the sequence is opened (headers only), so bad input fails before any model
runs, with the file named.
"""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from engine.errors import InputError
from engine.pipelines.dance.networks import ResEncUnet, normalize_input
from engine.pipelines.dance.sheets import CropBox, as_rgba, crop_square, premultiply, square_box

UDP_EXTENSIONS = (".npz",)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
UDP_KEY = "i"
MAX_MEMBER_BYTES = 1 << 30  # refuse archive members that would inflate past 1 GiB


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: 'f2' < 'f10'."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


class FrameFiles:
    """The frame files of a folder or a zip archive, naturally sorted, read one at a time."""

    def __init__(self, path: str | Path, extensions: tuple[str, ...], kind: str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            names = [p.name for p in self.path.iterdir() if p.is_file() and _is_frame(p.name, extensions)]
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            names = []
            with zipfile.ZipFile(self.path) as archive:
                for info in archive.infolist():
                    if info.is_dir() or not _is_frame(info.filename, extensions):
                        continue
                    if info.file_size > MAX_MEMBER_BYTES:
                        raise InputError(f"{info.filename} in {self.path.name} is too large to be a pose frame "
                                         f"({info.file_size} bytes unpacked).")
                    names.append(info.filename)
        else:
            raise InputError(f"{self.path} is neither a folder nor a .zip archive of {kind}; "
                             f"choose a folder or a .zip holding {'/'.join(extensions)} files.")
        if not names:
            raise InputError(f"{self.path.name} holds no {kind} ({'/'.join(extensions)} files); "
                             f"choose a folder or .zip with frames named 0{extensions[0]}, 1{extensions[0]}, ...")
        self.names = sorted(names, key=natural_key)

    def __len__(self) -> int:
        return len(self.names)

    def read(self, index: int) -> bytes:
        name = self.names[index]
        try:
            if self.path.is_dir():
                return (self.path / name).read_bytes()
            with zipfile.ZipFile(self.path) as archive:  # members are read into memory, never extracted
                return archive.read(name)
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise InputError(f"Could not read {name} from {self.path.name} ({exc}); "
                             "check that the file is complete.") from exc


def _is_frame(name: str, extensions: tuple[str, ...]) -> bool:
    path = PurePosixPath(name)
    return (path.suffix.lower() in extensions and not path.name.startswith(".")
            and "__MACOSX" not in path.parts)


class UDPSequence(Sequence[np.ndarray]):
    """UDP frames as float32 HxWx4 arrays (XYZ surface coordinates in [0, 1] and alpha)."""

    def __init__(self, path: str | Path) -> None:
        self.files = FrameFiles(path, UDP_EXTENSIONS, "UDP pose frames")
        self.frame_size = _same_size(self.files, lambda i: _udp_header(self.files.names[i], self.files.read(i)))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        name = self.files.names[index]
        try:
            with np.load(io.BytesIO(self.files.read(index)), allow_pickle=False) as npz:
                frame = npz[UDP_KEY]
        except (ValueError, OSError, zipfile.BadZipFile, KeyError, EOFError) as exc:
            raise InputError(f"Pose frame {name} could not be read ({exc}); re-export the sequence.") from exc
        return check_udp_frame(frame, name)


class PoseImageSequence(Sequence[np.ndarray]):
    """Pose pictures (e.g. frames of an anime dance video) as uint8 HxWx3/4 RGB(A) arrays."""

    def __init__(self, path: str | Path) -> None:
        self.files = FrameFiles(path, IMAGE_EXTENSIONS, "pose pictures")
        self.frame_size = _same_size(self.files, self._header)

    def _header(self, index: int) -> tuple[int, int]:
        try:
            with Image.open(io.BytesIO(self.files.read(index))) as image:
                return image.height, image.width
        except (OSError, ValueError) as exc:
            raise InputError(f"Pose picture {self.files.names[index]} is not a readable image ({exc}).") from exc

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        data = np.frombuffer(self.files.read(index), np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputError(f"Pose picture {self.files.names[index]} could not be decoded; use PNG or JPEG.")
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return image


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


def _udp_header(name: str, data: bytes) -> tuple[int, ...]:
    """Shape of the 'i' array of an .npz without inflating the array itself."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as npz:
            if f"{UDP_KEY}.npy" not in npz.namelist():
                keys = ", ".join(n.removesuffix(".npy") for n in npz.namelist()) or "none"
                raise InputError(f"Pose frame {name} has no array '{UDP_KEY}' (found: {keys}); UDP frames "
                                 f"store an HxWx4 float array under '{UDP_KEY}', as MMD2UDP writes them.")
            with npz.open(f"{UDP_KEY}.npy") as member:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"Pose frame {name} is not a readable .npz file ({exc}); re-export the sequence.") from exc
    _check_udp_layout(shape, dtype, name)
    return shape


def _check_udp_layout(shape: tuple[int, ...], dtype: np.dtype, name: str) -> None:
    if len(shape) != 3 or shape[2] != 4 or min(shape[:2]) < 2:
        raise InputError(f"Pose frame {name} holds an array of shape {tuple(shape)}; UDP frames must be "
                         "HxWx4 (X, Y, Z surface coordinates and alpha).")
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"Pose frame {name} holds {dtype} values; UDP frames must be floats in [0, 1].")


def check_udp_frame(frame: np.ndarray, name: str) -> np.ndarray:
    """Validate one UDP frame (any source) and return it as float32."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"Pose frame {name} is not an array; UDP frames are HxWx4 float arrays.")
    _check_udp_layout(frame.shape, frame.dtype, name)
    return frame.astype(np.float32, copy=False)


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
