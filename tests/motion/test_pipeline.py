import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import CheckpointError, InputError, JobCancelled
from engine.pipelines.base import CancelToken
from engine.pipelines.motion.pipeline import CONTROLNET_DIR, SVD_KEY, TRAJ_KEY, MotionPipeline
from engine.pipelines.motion.spec import SPEC
from engine.tasks import Options

IMAGE = (np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8)
TRACKS = [[[10, 10], [30, 20], [40, 40]], [[50, 50], [45, 30]]]
OPTIONS = {"frames": 4, "steps": 2, "size": 64, "seed": 7}


def options(given: dict) -> Options:
    return SPEC.parse_options(given)


def test_end_to_end_tiny_run(tiny_pipeline: MotionPipeline):
    brush = np.zeros((64, 64), np.uint8)
    brush[:32, :32] = 255
    calls = []
    out = tiny_pipeline({"image": IMAGE, "trajectories": TRACKS, "brush": brush}, options(OPTIONS),
                        progress=lambda f, m: calls.append((f, m)))
    frames = out.frames
    assert frames.shape == (4, 64, 64, 3) and frames.dtype == np.float32
    assert np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1
    assert out.flow_frames.shape == (4, 64, 64, 3) and out.flow_frames.dtype == np.uint8
    assert (out.flow_frames[0] == 255).all() and not (out.flow_frames[-1] == 255).all()
    assert out.hint.shape == (64, 64, 3)
    steps = [m for _, m in calls if m.startswith("Denoising")]
    assert steps == ["Denoising step 1/2", "Denoising step 2/2"]
    assert [f for f, _ in calls] == sorted(f for f, _ in calls) and calls[-1][0] == 1.0
    again = tiny_pipeline({"image": IMAGE, "trajectories": TRACKS, "brush": brush}, options(OPTIONS))
    np.testing.assert_array_equal(again.frames, frames)  # same seed, same video


def test_motion_field_follows_the_drag(tiny_pipeline: MotionPipeline):
    field = tiny_pipeline.motion_field(IMAGE, [[[20, 20], [40, 20]]], None, 4)
    assert field.shape == (3, 2, 64, 64)
    preview = tiny_pipeline.preview_flow(IMAGE, [[[20, 20], [40, 20]]], size=64)
    assert preview.shape == (64, 64, 3) and preview.dtype == np.uint8
    unfinished = tiny_pipeline.preview_flow(IMAGE, [[[20, 20]]], size=64)
    assert (unfinished == 255).all()


def test_cancel_stops_before_the_first_step(tiny_pipeline: MotionPipeline):
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        tiny_pipeline({"image": IMAGE, "trajectories": TRACKS}, options(OPTIONS), cancel=token)


@pytest.mark.parametrize("inputs, given, message", [
    ({"image": IMAGE, "trajectories": []}, {}, "No trajectory"),
    ({"image": IMAGE, "trajectories": [[[3, 3]]]}, {}, "single point"),
    ({"image": IMAGE.astype(np.float32), "trajectories": TRACKS}, {}, "RGB picture"),
    ({"image": IMAGE, "trajectories": TRACKS, "brush": np.zeros((8, 8))}, {}, "motion brush"),
    ({"image": IMAGE, "trajectories": TRACKS}, {"scale": 3}, "scale"),
    ({"image": IMAGE, "trajectories": TRACKS}, {"frames": 1}, "frames"),
    ({"image": IMAGE, "trajectories": TRACKS}, {"size": 100}, "multiple of 64"),
    ({"image": IMAGE, "trajectories": TRACKS}, {"guidance": 2}, "Unknown"),
])
def test_bad_inputs(tiny_pipeline: MotionPipeline, inputs, given, message):
    with pytest.raises(InputError, match=message):
        tiny_pipeline(inputs, options({**OPTIONS, **given}))


def test_points_follow_the_resize_when_the_image_is_not_prepared(tiny_pipeline: MotionPipeline):
    big = np.repeat(np.repeat(IMAGE, 2, axis=0), 2, axis=1)  # 128x128 -> prepared to 64x64
    image, points, brush = tiny_pipeline._prepare(
        {"image": big, "trajectories": [[[40, 40], [80, 60]]], "brush": np.ones((128, 128))}, 64)
    assert image.shape == (64, 64, 3) and points == [[[20.0, 20.0], [40.0, 30.0]]] and brush.shape == (64, 64)


def test_loading_is_strict(tiny_folders, tmp_path: Path):
    broken = {key: tmp_path / key for key in tiny_folders}
    for key, folder in tiny_folders.items():
        shutil.copytree(folder, broken[key])
    weights = broken[TRAJ_KEY] / CONTROLNET_DIR / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state.pop("flow_encoder.zeroconvs.2.bias")
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="flow_encoder.zeroconvs.2.bias"):
        MotionPipeline.load(broken, "cpu", torch.float32)
    with pytest.raises(CheckpointError, match="mofa_traj"):
        MotionPipeline.load({SVD_KEY: broken[SVD_KEY]}, "cpu", torch.float32)
    config = json.loads((broken[SVD_KEY] / "unet" / "config.json").read_text())
    assert config["block_out_channels"] == [32, 64, 64, 64]


def test_bench_reports_steps_and_memory():
    from engine import bench
    from engine.pipelines.motion.spec import SPEC

    report = bench.run(SPEC, device="cpu", size="tiny", frames=4, steps=2)
    assert report["results"]["resolution"] == 64 and report["settings"] == {"frames": 4, "steps": 2}
    assert 0 < report["results"]["s_per_step"] < report["timings_s"]["video"] and report["peak_memory_gib"] > 0


def test_model_offload_stages_each_network_and_keeps_the_result(tiny_folders, tiny_pipeline: MotionPipeline):
    from tests.offload_check import run_checking_stages

    offloaded = MotionPipeline.load(tiny_folders, "cpu", torch.float32, offload="model")
    out = run_checking_stages(offloaded.offload, offloaded.networks(),
                              lambda: offloaded({"image": IMAGE, "trajectories": TRACKS}, options(OPTIONS)))
    np.testing.assert_array_equal(out.frames, tiny_pipeline({"image": IMAGE, "trajectories": TRACKS}, options(OPTIONS)).frames)
