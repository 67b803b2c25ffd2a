"""DancePipeline on the tiny Space files: strict loading, frames, modes, progress, cancellation, bad input."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.errors import CheckpointError, InputError, JobCancelled
from engine.pipelines.base import CancelToken
from engine.pipelines.dance.networks import NETWORK_NAMES
from engine.pipelines.dance.pipeline import DancePipeline, frame_range
from engine.pipelines.dance.spec import SPEC
from engine.tasks import Options
from engine.pipelines.dance.sheets import prepare_sheets, square_box
from engine.pipelines.dance.udp import PoseImageSequence, UDPSequence

from .conftest import SIZE

UDP = {"output_size": "crop", "working_size": SIZE}


def options(given: dict) -> Options:
    return SPEC.parse_options(given)


def frame_count(poses: UDPSequence, given: dict) -> int:
    return len(frame_range(options(given), len(poses)))


@pytest.fixture(scope="module")
def poses(tiny_space: Path) -> UDPSequence:
    return UDPSequence(tiny_space / "poses_template.zip")


@pytest.fixture(scope="module")
def frames(pipeline, sheets, poses) -> list[np.ndarray]:
    return list(pipeline({"sheets": sheets, "poses": poses}, options(UDP)))


def test_load_is_strict_and_keeps_every_tensor(tiny_space, pipeline):
    for name in NETWORK_NAMES:
        saved = torch.load(tiny_space / "weights" / f"{name}.pth", weights_only=True)
        loaded = pipeline.nets[name].state_dict()
        assert saved.keys() == loaded.keys()
        assert all(torch.equal(saved[k], loaded[k]) for k in saved), name


def test_load_reports_missing_and_foreign_checkpoints(tiny_space, tmp_path):
    shutil.copytree(tiny_space / "weights", tmp_path / "weights")
    state = torch.load(tmp_path / "weights" / "shader.pth", weights_only=True)
    state["decoder_blocks.0.conv0.0.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "weights" / "shader.pth")
    with pytest.raises(CheckpointError, match="not the CoNR networks"):
        DancePipeline.load({"conr": tmp_path}, "cpu", torch.float32)
    (tmp_path / "weights" / "rgbadecodernet.pth").unlink()
    with pytest.raises(CheckpointError, match="rgbadecodernet.pth is missing"):
        DancePipeline.load({"conr": tmp_path}, "cpu", torch.float32)


def test_udp_run_yields_one_pasted_frame_per_pose(frames, poses):
    assert len(frames) == frame_count(poses, UDP) == 12
    for index, frame in enumerate(frames):
        assert frame.shape == (128, 96, 4) and frame.dtype == np.float32
        alpha = frame[..., 3]
        assert 0 <= alpha.min() and alpha.max() <= 1 and alpha.max() > 0
        assert (frame[..., :3] <= alpha[..., None] + 1e-6).all()  # premultiplied
        # nothing outside the pose's crop square
        box = square_box((poses[index][..., 3] * 255).astype(np.uint8))
        outside = np.ones(alpha.shape, bool)
        outside[box.top:box.bottom, box.left:box.right] = False
        assert not frame[outside].any()
    assert not np.array_equal(frames[0], frames[5])


def test_runs_are_deterministic_and_ranges_select_frames(pipeline, sheets, poses, frames):
    again = list(pipeline({"sheets": sheets, "poses": poses}, options({**UDP, "frame_start": 9, "frame_end": 20})))
    assert len(again) == 3 and frame_count(poses, {**UDP, "frame_start": 9, "frame_end": 20}) == 3
    for a, b in zip(again, frames[9:]):
        np.testing.assert_array_equal(a, b)


def test_sheet_features_are_computed_once_per_call(tiny_space, sheets, poses):
    pipe = DancePipeline.load({"conr": tiny_space}, "cpu", torch.float32)
    calls = []
    hook = pipe.nets["udpparsernet"].backbone[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        list(pipe({"sheets": sheets, "poses": poses}, options({**UDP, "frame_end": 4})))
    finally:
        hook.remove()
    assert len(calls) == 1


def test_fit_mode_returns_the_chosen_size(pipeline, sheets, poses, frames):
    fitted = next(iter(pipeline({"sheets": sheets, "poses": poses},
                                options({**UDP, "output_size": "fit", "width": 120, "height": 80}))))
    assert fitted.shape == (80, 120, 4)
    assert not fitted[:, :30].any() and not fitted[:, 90:].any()  # 128x96 frame fits as 60x80, centred
    assert fitted[..., 3].max() > 0


def test_parser_mode_renders_pose_pictures(pipeline, sheets, tiny_space, tmp_path):
    for i in range(3):
        picture = np.roll(sheets[i % 2], 5 * i, axis=1)
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(picture, cv2.COLOR_RGBA2BGRA))
    pictures = PoseImageSequence(tmp_path)
    out = list(pipeline({"sheets": sheets, "poses": pictures, "pose_mode": "parser"}, options(UDP)))
    assert len(out) == 3 and all(f.shape == (160, 120, 4) for f in out)
    assert all(0 <= f[..., 3].min() and f[..., 3].max() <= 1 for f in out)
    assert not np.array_equal(out[0], out[1])


def test_progress_and_cancellation(pipeline, sheets, poses):
    reports: list[float] = []
    list(pipeline({"sheets": sheets, "poses": poses}, options({**UDP, "frame_end": 3}),
                  progress=lambda fraction, message: reports.append(fraction)))
    assert reports == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])

    cancel = CancelToken()
    run = pipeline({"sheets": sheets, "poses": poses}, options(UDP), cancel=cancel)
    next(run)
    cancel.cancel()
    with pytest.raises(JobCancelled):
        next(run)


@pytest.mark.parametrize("mode, given, match", [
    ("video", {}, "pose_mode"),
    ("udp", {"output_size": "stretch"}, "output_size"),
    ("udp", {"output_size": "fit", "width": 0, "height": 64}, "width"),
    ("udp", {"working_size": 200}, "working_size must be one of"),
    ("udp", {"frame_start": 12}, "selects no frame"),
    ("parser", {}, "needs pose pictures"),
])
def test_bad_options_fail_before_any_frame(pipeline, sheets, poses, mode, given, match):
    with pytest.raises(InputError, match=match):
        pipeline({"sheets": sheets, "poses": poses, "pose_mode": mode}, options({**UDP, **given}))


def test_opaque_sheet_is_refused_at_call_time(pipeline, poses):
    with pytest.raises(InputError, match="Cut the character out"):
        pipeline({"sheets": [np.full((64, 64, 4), 255, np.uint8)], "poses": poses}, options(UDP))


def test_bench_times_the_parser_and_the_frames():
    from engine import bench
    from engine.pipelines.dance.spec import SPEC

    report = bench.run(SPEC, device="cpu", size="tiny", sheets=2, frames=1)
    assert report["timings_s"]["parser"] > 0 and report["results"]["resolution"] == 256
    assert report["results"]["s_per_frame"] == pytest.approx(report["timings_s"]["frames"], abs=1e-3)


def test_sheet_reference_keeps_the_originals_double_alpha(pipeline, sheets):
    rgb, mask = prepare_sheets(sheets, SIZE)
    character = pipeline._parse_character(rgb, mask)
    reference = character.reference[0].numpy()
    np.testing.assert_allclose(reference[:, :3], mask * rgb)  # rgb is already premultiplied once
    np.testing.assert_array_equal(reference[:, 3:], mask)
    assert [tuple(f.shape[:2]) for f in character.features] == [(1, 2)] * 5
