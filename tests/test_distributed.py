"""One job divided among devices (engine.distributed): 2 CPU processes over gloo give the one-process result for the
pose task's windows and the face task's periodic windows; the window assignment; the launcher's failure handling;
the CLI's --devices for a split job."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import Engine, distributed, media
from engine.__main__ import explain, main
from engine.distributed import Rank, WorkerFailed, launch, my_share
from engine.errors import InputError
from tests.tolerance import assert_relative_close

# The workers import this module: the pipelines (diffusers, transformers) are imported only where they are used.

CPUS = [torch.device("cpu")] * 2
# 10 frames pad to 12: windows start at 0, 3, 6, 9 (the last wraps around), so each rank gets two; guided.
POSE = {"size": 64, "steps": 2, "context": 4, "overlap": 1, "guidance": 2.5, "seed": 5}
# 37 frames: windows (1, 25) and (13, 37) listed twice; one to each rank.
FACE = {"size": 64, "steps": 2, "seed": 3}
FACE_FRAMES = 37


# ------------------------------------------------------------------------------------------------ assignment
@pytest.mark.parametrize("count, world", [(1, 2), (4, 2), (7, 2), (7, 3), (2, 5)])
def test_round_robin_covers_every_window_once_and_is_balanced(monkeypatch: pytest.MonkeyPatch, count: int,
                                                              world: int):
    windows = [[i, i + 1] for i in range(count)]
    monkeypatch.setattr(distributed, "is_split", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: world)
    shares = []
    for place in range(world):
        monkeypatch.setattr(distributed.dist, "get_rank", lambda place=place: place)
        shares.append(my_share(windows))
    assert sorted(w for share in shares for w in share) == windows  # each window once
    assert {len(share) for share in shares} <= {count // world, -(-count // world)}  # floor or ceil each
    assert shares[0][0] == windows[0]


def test_without_a_process_group_nothing_changes():
    windows = [[0, 1], [1, 2], [2, 3]]
    assert my_share(windows) == windows
    total = torch.ones(3)
    distributed.all_sum(total)
    assert total.tolist() == [1.0, 1.0, 1.0] and distributed.agree(7) == 7


def test_face_ranks_keep_the_scheduler_in_step_also_without_a_window(monkeypatch: pytest.MonkeyPatch):
    """A 20-frame clip is one window: rank 1 of 2 steps nothing, yet its scheduler moves on as rank 0's does."""
    from diffusers import EulerDiscreteScheduler

    from engine.pipelines.face.windows import periodic_windows, step_windows
    from engine.pipelines.motion.tiny import SVD_SCHEDULER

    monkeypatch.setattr(distributed, "is_split", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda tensor, op: None)  # each rank's own sums
    latents = torch.randn(1, 20, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    indices = []
    def ones(part, t, window):
        return torch.ones_like(part)

    for place in (0, 1):
        monkeypatch.setattr(distributed.dist, "get_rank", lambda place=place: place)
        scheduler = EulerDiscreteScheduler.from_config(SVD_SCHEDULER)
        scheduler.set_timesteps(3)
        for t in scheduler.timesteps[:2]:
            stepped = step_windows(scheduler, latents, t, periodic_windows(20), ones)
        indices.append(scheduler.step_index)
        assert bool((stepped == 0).all()) == (place == 1)  # rank 1 contributes nothing to the sums
    assert indices == [2, 2]


# ------------------------------------------------------------------------------------------------ numerics
def _pose_inputs() -> dict:
    from engine.pipelines.pose.palette import viridis

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    motion = [viridis(rng.integers(0, 256, (64, 64)).astype(np.uint8)) for _ in range(10)]
    return {"reference": reference, "motion": motion}


def _face_inputs() -> dict:
    from engine.pipelines.face.tiny import synthetic_landmarks

    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return {"image": image, "landmarks": synthetic_landmarks(FACE_FRAMES, 64, 64)}


class Decoding(Exception):
    """Raised by a stand-in decoder to hand out the final latents (fp32, not rounded to uint8 frames)."""


def _final_latents(pipeline, decoder: str, inputs: dict, options) -> torch.Tensor:
    """The pipeline's latents after the last step."""
    def stop(latents, *rest):
        raise Decoding(latents)

    if decoder == "pose":
        pipeline._decode = stop
    else:
        pipeline.svd.decode = stop
    with pytest.raises(Decoding) as decoding:
        pipeline(inputs, options)
    return decoding.value.args[0]


def _run_both(pose_folders: dict, face_folders: dict) -> dict[str, torch.Tensor]:
    """Both tasks' final latents, on one thread (threaded kernels of another width differ by more than the order
    of the sums does)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _latents_of_both(pose_folders, face_folders)
    finally:
        torch.set_num_threads(threads)


def _latents_of_both(pose_folders: dict, face_folders: dict) -> dict[str, torch.Tensor]:
    from engine.pipelines.face.pipeline import FacePipeline
    from engine.pipelines.face.spec import SPEC as FACE_SPEC
    from engine.pipelines.pose.pipeline import PosePipeline
    from engine.pipelines.pose.spec import SPEC as POSE_SPEC

    pose = PosePipeline.load(pose_folders, "cpu", torch.float32)
    face = FacePipeline.load(face_folders, "cpu", torch.float32)
    return {"pose": _final_latents(pose, "pose", _pose_inputs(), POSE_SPEC.parse_options(POSE)),
            "face": _final_latents(face, "face", _face_inputs(), FACE_SPEC.parse_options(FACE))}


def _rank_runs_both(place: Rank, pose_folders: dict, face_folders: dict, out: Path) -> None:
    torch.save(_run_both(pose_folders, face_folders), out / f"rank{place.rank}.pt")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    from engine.pipelines.face.pipeline import LDMK_KEY, SVD_KEY
    from engine.pipelines.face.tiny import TRAJ_KEY, write_tiny_checkpoints
    from tests.pose.conftest import tiny_folders

    root = tmp_path_factory.mktemp("dist_ckpt")
    face = {SVD_KEY: root / "svd", LDMK_KEY: root / "ldmk", TRAJ_KEY: root / "traj"}
    write_tiny_checkpoints(face, seed=0)
    return tiny_folders(root / "pose"), face


def test_two_processes_give_the_one_process_result(folders: tuple[dict, dict], tmp_path: Path):
    pose_folders, face_folders = folders
    launch(CPUS, _rank_runs_both, (pose_folders, face_folders, tmp_path), explain)
    ranks = [torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in range(2)]
    single = _run_both(pose_folders, face_folders)
    for task in ("pose", "face"):
        assert torch.equal(ranks[0][task], ranks[1][task])  # every rank holds the same latents
        assert_relative_close(ranks[0][task], single[task], rtol=1e-4)


# ------------------------------------------------------------------------------------------------ launcher
def _fails_on_rank_1(place: Rank) -> None:
    if place.rank == 1:
        raise InputError("rank 1 could not read its input")
    distributed.all_sum(torch.ones(1))  # rank 0 would wait here forever for rank 1


def test_a_failing_rank_ends_all_with_its_message_and_code():
    started = time.monotonic()
    with pytest.raises(WorkerFailed, match="rank 1 could not read its input") as failure:
        launch(CPUS, _fails_on_rank_1, (), explain)
    assert failure.value.code == 2
    assert time.monotonic() - started < 60  # no hang: rank 0 was stopped while waiting


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dist_inputs")
    inputs = _pose_inputs()
    media.write_png(folder / "reference.png", inputs["reference"])
    media.write_mp4(folder / "motion.mp4", inputs["motion"][:6], fps=25)
    return {"image": folder / "reference.png", "motion": folder / "motion.mp4"}


def test_cli_devices_writes_the_run_once(tiny_hub: Path, session_engine: Engine, clip: dict[str, Path],
                                         tmp_path: Path):
    """`python -m engine` itself (its workers must find their functions although the CLI module runs as __main__);
    seed -1: both ranks draw rank 0's seed, so the result is the one-process run with the recorded seed."""
    out = tmp_path / "runs" / "split"
    flags = ["--size=64", "--steps=1", "--context=4", "--overlap=1", "--seed=-1", "--no-grid",
             "--motion-kind=densepose"]
    done = subprocess.run([sys.executable, "-m", "engine", "pose", "--image", str(clip["image"]), "--motion",
                           str(clip["motion"]), *flags, "--devices", "cpu,cpu", "--cache-dir", str(tiny_hub),
                           "--offline", "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("settings:") == 1 and str(out / "result.mp4") in done.stdout  # rank 0 reports, alone
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["split"]
    assert sorted(p.name for p in out.iterdir()) == ["result.mp4", "settings.json"]
    frames = np.stack(media.read_video(out / "result.mp4")[0]).astype(np.float32)
    assert len(frames) == 6
    options = json.loads((out / "settings.json").read_text())["options"]
    alone = session_engine.run("pose", clip, options).files["video"]
    # the same pixels up to H.264 noise (x264 is not bit-exact across runs; another seed differs by ~30)
    assert np.abs(np.stack(media.read_video(alone)[0]).astype(np.float32) - frames).mean() < 3.0


@pytest.mark.parametrize("task, devices, message", [
    ("pose", "cuda:3,cuda:4", "cuda:3"),
    ("pose", "cpu,gpu", "Unknown device 'gpu'"),
    ("motion", "cpu,cpu", "The motion task cannot divide one job among several devices"),
])
def test_cli_refuses_devices_it_cannot_use(capsys: pytest.CaptureFixture, clip: dict[str, Path], tmp_path: Path,
                                           task: str, devices: str, message: str):
    inputs = ["--image", str(clip["image"]), "--motion" if task == "pose" else "--trajectories", str(clip["motion"])]
    assert main([task, *inputs, "--devices", devices, "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "no").exists()


def test_bench_devices_reports_once_from_rank_0(capfd: pytest.CaptureFixture):
    assert main(["bench", "pose", "--size", "tiny", "--frames", "20", "--steps", "1", "--devices", "cpu,cpu"]) == 0
    report = json.loads(capfd.readouterr().out)
    assert report["devices"] == ["cpu", "cpu"]
    assert report["results"]["windows"] == 3 and "s_per_step" in report["results"]
