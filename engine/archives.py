"""Frame files from a folder, a zip archive or a single file, read lazily and within the archive limits.

Frames sort numerically ("2.png" before "10.png"). A zip is opened, and its index read, once; members are streamed,
never extracted, and every read is capped at the member's declared size. What an archive may cost comes from
`engine.limits` (members and unpacked bytes per zip); symbolic links in a folder are skipped.
"""
from __future__ import annotations

import contextlib
import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

from engine import limits
from engine.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CHUNK = 1 << 20  # members are inflated this much at a time


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: 'f2' < 'f10'."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def read_capped(stream: IO[bytes], limit: int, what: str) -> bytearray:
    """Read a stream in chunks, refusing it as soon as it passes `limit` bytes (a zip member's declared size can
    lie: nothing past it is inflated)."""
    data = bytearray()
    while chunk := stream.read(min(CHUNK, limit + 1 - len(data))):
        data += chunk
        if len(data) > limit:
            raise InputError(f"{what} unpacks to more than the {limit} bytes it declares: the archive is corrupt or "
                             "forged. Create the .zip again.")
    return data


class FrameFiles:
    """The frame files of a folder, a zip archive or a single frame file, naturally sorted, read one at a time.

    A zip is checked against the archive limits from its index alone (member count, declared unpacked size), before
    anything is inflated; every read is then capped at the member's declared size."""

    def __init__(self, path: str | Path, extensions: tuple[str, ...], kind: str) -> None:
        self.path = Path(path)
        self._archive: zipfile.ZipFile | None = None
        if self.path.is_file() and self.path.suffix.lower() in extensions:
            sizes = {self.path.name: self.path.stat().st_size}
        elif self.path.is_dir():
            sizes = _folder_frames(self.path, extensions)
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self._archive, sizes = _open_archive(self.path, extensions)
        else:
            raise InputError(f"{self.path} is neither a folder nor a .zip archive of {kind}; "
                             f"choose a folder or a .zip holding {'/'.join(extensions)} files.")
        if not sizes:
            self.close()
            raise InputError(f"{self.path.name} holds no {kind} ({'/'.join(extensions)} files); "
                             f"choose a folder or .zip with frames named 0{extensions[0]}, 1{extensions[0]}, ...")
        self.sizes = sizes  # declared unpacked sizes
        self.names = sorted(sizes, key=natural_key)

    def __len__(self) -> int:
        return len(self.names)

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()

    def _open(self, name: str) -> IO[bytes]:
        if self._archive is not None:  # members are streamed, never extracted
            return self._archive.open(name)
        return open(self.path if self.path.is_file() else self.path / name, "rb")

    @contextlib.contextmanager
    def reading(self, index: int) -> Iterator[IO[bytes]]:
        """A binary stream of one frame file; read errors become an InputError naming the file."""
        name = self.names[index]
        try:
            with self._open(name) as stream:
                yield stream
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error, KeyError) as exc:
            raise InputError(f"Could not read {name} from {self.path.name} ({exc}); "
                             "check that the file is complete.") from exc

    def read(self, index: int) -> bytearray:
        """One whole frame file, no larger than its declared size."""
        name = self.names[index]
        with self.reading(index) as stream:
            return read_capped(stream, self.sizes[name], f"{name} in {self.path.name}")


def _folder_frames(folder: Path, extensions: tuple[str, ...]) -> dict[str, int]:
    """Regular files directly in the folder; symbolic links are skipped, so nothing outside it is read."""
    return {p.name: p.stat().st_size for p in folder.iterdir()
            if not p.is_symlink() and p.is_file() and _is_frame(p.name, extensions)}


def _open_archive(path: Path, extensions: tuple[str, ...]) -> tuple[zipfile.ZipFile, dict[str, int]]:
    """The open zip and its frame members' declared sizes, checked against the archive limits."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path.name} is not a readable .zip archive ({exc}); create it again.") from exc
    sizes = {info.filename: info.file_size for info in archive.infolist()
             if not info.is_dir() and _is_frame(info.filename, extensions)}
    try:
        _check_archive(path, len(archive.infolist()), sum(sizes.values()))
    except InputError:
        archive.close()
        raise
    return archive, sizes


def _check_archive(path: Path, members: int, unpacked: int) -> None:
    allowed = limits.current()
    if members > allowed.max_archive_members:
        raise InputError(f"{path.name} holds {members} files; at most {allowed.max_archive_members} are read "
                         "from one .zip. Split the sequence or remove the other files.")
    if unpacked > allowed.max_archive_bytes:
        raise InputError(f"{path.name} unpacks to {unpacked / 2**20:.1f} MB; at most "
                         f"{allowed.max_archive_bytes / 2**20:g} MB are read from one .zip (set with --max-archive-mb). "
                         "Shorten the sequence or lower its resolution.")


def _is_frame(name: str, extensions: tuple[str, ...]) -> bool:
    path = PurePosixPath(name)
    return (path.suffix.lower() in extensions and not path.name.startswith(".")
            and "__MACOSX" not in path.parts)
