"""Failures a user or the machine causes are classified (InputError 2, CheckpointError 3, ResourceError 4) and explained
in one line: a full disk, hostile trajectories, an out-of-range seed, an unsafe pickle, a file missing from a cached
snapshot, an ordinary video given as DensePose motion."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine import Engine, EngineConfig, media, user_message
from engine.__main__ import main
from engine.errors import CheckpointError, InputError, ResourceError
from engine.hub import load_specs
from engine.models.mofa.cmp import read_cmp_state
from engine.pipelines.dance.pipeline import _read_networks
from engine.pipelines.motion.job import MAX_TRAJECTORY_BYTES, parse_trajectories
from engine.pipelines.pose.palette import densepose_warning, far_from_viridis, viridis
from engine.pipelines.pose.weights import read_temporal_checkpoint
from engine.tasks import Input, Option, TaskSpec
from engine.testing import commit_for
from engine.weights import load_pickle_safely
from tests.fake_tasks.echo import job as echo_job


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def one_line(message: str) -> bool:
    return "\n" not in message.strip()


# ---------------------------------------------------------------------------------------------------- disk full

ECHO = TaskSpec(name="echo", title="Echo", description="test task", checkpoints=(),
                inputs=(Input("text", "file", "a text file"),),
                options=(Option("mode", "choice", "ok", "behaviour", choices=("ok", "cancel", "crash")),),
                package="tests.fake_tasks.echo")


def _failing_execute(code: int):
    def execute(ctx):
        ctx.path("partial.bin").write_bytes(b"x" * 3000)  # what the job managed to write before the disk filled
        raise OSError(code, os.strerror(code), str(ctx.path("result.mp4")))
    return execute


@pytest.fixture
def echo_engine(engine: Engine, tmp_path: Path) -> tuple[Engine, Path]:
    engine.tasks["echo"] = ECHO
    text = tmp_path / "in.txt"
    text.write_text("hello")
    return engine, text


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_is_a_resource_error_naming_the_folder(echo_engine, monkeypatch: pytest.MonkeyPatch,
                                                          code: int) -> None:
    engine, text = echo_engine
    monkeypatch.setattr(echo_job, "execute", _failing_execute(code))
    with pytest.raises(ResourceError) as err:
        engine.run("echo", {"text": text})
    message = user_message(err.value)
    outputs = Path(engine.config.outputs)
    assert str(outputs / "echo") in message and "free there" in message and "3 KB" in message
    assert one_line(message) and "Unexpected" not in message
    assert not any(p.is_file() for p in outputs.rglob("*"))  # the half-written run is gone


def test_other_os_errors_are_not_called_a_full_disk(echo_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, text = echo_engine
    monkeypatch.setattr(echo_job, "execute", _failing_execute(errno.EIO))
    with pytest.raises(OSError) as err:
        engine.run("echo", {"text": text})
    assert not isinstance(err.value, ResourceError) and err.value.errno == errno.EIO


# ---------------------------------------------------------------------------------------------------- trajectories

HOSTILE = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "long_int": "[[[1, " + "9" * 401 + "], [2, 3]]]",
    "huge_int": "[[[1, " + "9" * 5000 + "], [2, 3]]]",  # past Python's int-conversion digit limit
    "huge_float": "[[[1, 1e400], [2, 3]]]",
    "nan": "[[[NaN, 1], [2, 3]]]",
    "infinity": "[[[-Infinity, 1], [2, 3]]]",
    "oversized": "[[" + "[1, 2], " * (MAX_TRAJECTORY_BYTES // 8) + "[1, 2]]]",
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_trajectory_files_are_input_errors_naming_the_file(tmp_path: Path, case: str) -> None:
    path = tmp_path / "traj.json"
    path.write_text(HOSTILE[case])
    with pytest.raises(InputError) as err:
        parse_trajectories(path)
    message = str(err.value)
    assert "traj.json" in message and one_line(message) and "sys.set_int_max_str_digits" not in message


def test_deeply_nested_trajectories_exit_2_on_the_cli(capsys, tiny_hub: Path, tmp_path: Path) -> None:
    image, traj = tmp_path / "picture.png", tmp_path / "traj.json"
    media.write_png(image, np.zeros((64, 64, 3), np.uint8))
    traj.write_text(HOSTILE["deep"])
    code, err = cli(capsys, "motion", "--image", str(image), "--trajectories", str(traj), "--out",
                    str(tmp_path / "out"), "--cache-dir", str(tiny_hub), "--offline", "--device", "cpu")
    assert code == 2 and "traj.json" in err and err.count("\n") == 1


def test_ordinary_trajectories_still_parse() -> None:
    assert parse_trajectories("[[[1, 2.5], [3, 4]]]") == [[[1.0, 2.5], [3.0, 4.0]]]


# ---------------------------------------------------------------------------------------------------- seed

def test_seed_out_of_range_exits_2_with_the_range(capsys, tiny_hub: Path, tmp_path: Path) -> None:
    code, err = cli(capsys, "pose", "--image", str(tmp_path / "a.png"), "--motion", str(tmp_path / "m.mp4"),
                    "--seed", str(2**64), "--out", str(tmp_path / "out"), "--cache-dir", str(tiny_hub), "--offline",
                    "--device", "cpu")
    assert code == 2 and "seed" in err and str(2**32 - 1) in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------- unsafe pickles

class Payload:
    """Unpickling this would create a folder: the proof that the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _read_dance(path: Path) -> object:
    return _read_networks(path.parent)


READERS = {"cmp": read_cmp_state, "magicanimate": read_temporal_checkpoint, "dance": _read_dance}


@pytest.mark.parametrize("reader", READERS)
def test_a_pickle_with_code_is_refused_in_one_line_and_never_runs(tmp_path: Path, reader: str) -> None:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "udpparsernet.pth"  # the first file the dance reader opens
    torch.save({"state_dict": {"w": torch.zeros(1), "x": Payload(marker)}}, path)
    with pytest.raises(CheckpointError) as err:
        READERS[reader](path)
    message = user_message(err.value)
    assert not marker.exists()
    assert str(path) in message and "refused" in message and "download" in message and one_line(message)
    assert "weights_only" not in message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_checkpoint_is_unreadable_not_unsafe(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "broken.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(b"\x80\x02garbage" if damage == "garbage" else data[:len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_pickle_safely(path, "conr")
    message = str(err.value)
    assert "could not be read" in message and "'conr'" in message and one_line(message)
    assert "refused" not in message and "weights_only" not in message


def test_a_plain_state_dict_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.pth"
    torch.save({"w": torch.arange(3)}, path)
    assert torch.equal(load_pickle_safely(path, "conr", mmap=True)["w"], torch.arange(3))


# ---------------------------------------------------------------------------------------------------- cached snapshot

def test_a_file_missing_from_a_cached_snapshot_is_named_with_the_fix(capsys, tiny_hub: Path, tmp_path: Path) -> None:
    spec = load_specs()["conr"]
    repo = f"{spec.repo_type}s--{spec.repo.replace('/', '--')}"
    shutil.copytree(tiny_hub / repo, tmp_path / "hub" / repo)
    (tmp_path / "hub" / repo / "snapshots" / commit_for(spec) / "weights" / "shader.pth").unlink()
    engine = Engine(EngineConfig(device="cpu", outputs=tmp_path / "outputs", cache_dir=tmp_path / "hub",
                                 offline=True))
    with pytest.raises(CheckpointError) as err:
        engine.pipeline("dance")
    message = str(err.value)
    assert "weights/shader.pth" in message and "python -m engine download dance" in message
    assert "Models tab" in message and one_line(message)
    code, err_text = cli(capsys, "download", "dance", "--cache-dir", str(tmp_path / "hub"), "--offline")
    assert code == 3 and "weights/shader.pth" in err_text and "python -m engine download dance" in err_text


# ---------------------------------------------------------------------------------------------------- pose motion

def _clip(path: Path, frames: list[np.ndarray]) -> Path:
    media.write_mp4(path, frames, fps=25)
    return path


def _smooth(rng: np.random.Generator, channels: int) -> np.ndarray:
    coarse = rng.integers(0, 256, (4, 4, channels), dtype=np.uint8)
    return cv2.resize(coarse, (64, 64), interpolation=cv2.INTER_LINEAR).reshape(64, 64, channels)


def test_an_ordinary_video_given_as_densepose_motion_runs_with_a_warning(engine: Engine, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """With --motion-kind densepose the user says the video is a DensePose rendering; one that is not is used as
    given, with a warning (auto would extract its DensePose instead)."""
    rng = np.random.default_rng(1)
    motion = _clip(tmp_path / "dance.mp4", [_smooth(rng, 3) for _ in range(2)])
    reference = tmp_path / "person.png"
    media.write_png(reference, np.full((64, 64, 3), 128, np.uint8))
    shown: list[str] = []
    options = {"size": 64, "steps": 1, "context": 2, "overlap": 1, "motion_kind": "densepose"}
    result = engine.run("pose", {"image": reference, "motion": motion}, options, progress=lambda f, m: shown.append(m))
    expected = "'dance.mp4' looks like an ordinary video, not a DensePose rendering"
    assert len(result.settings["warnings"]) == 1 and expected in result.settings["warnings"][0]
    assert any(message.startswith("Warning: ") and expected in message for message in shown)
    assert json.loads(result.files["settings"].read_text())["warnings"] == result.settings["warnings"]
    code, err = cli(capsys, "pose", "--image", str(reference), "--motion", str(motion), "--out", str(tmp_path / "cli"),
                    "--cache-dir", str(engine.config.cache_dir), "--offline", "--device", "cpu", "--size", "64",
                    "--steps", "1", "--context", "2", "--overlap", "1", "--motion-kind", "densepose")
    assert code == 0 and f"warning: Motion video {expected}" in err


def test_a_viridis_coloured_video_passes_the_densepose_check(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [viridis(_smooth(rng, 1)[..., 0]) for _ in range(2)]
    assert far_from_viridis(frames[0]) == 0.0
    decoded = media.read_video(_clip(tmp_path / "densepose.mp4", frames))[0]
    assert densepose_warning(decoded[0], "densepose.mp4") is None  # after H.264: still DensePose colours


def test_a_full_disk_when_the_run_folder_is_made_is_a_resource_error(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    from engine.outputs import RunFolder

    def full(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(ResourceError, match="is full"):
        RunFolder(tmp_path / "outputs", "echo")


def test_trajectory_text_that_is_neither_json_nor_a_file_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match="neither JSON text nor an existing file"):
        parse_trajectories("x" * 5000)  # too long for a file name: the OS refuses to look it up
