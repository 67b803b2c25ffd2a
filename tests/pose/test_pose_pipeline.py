"""End to end on tiny checkpoints: windows with wrap-around, output frames, seeds, cancellation, bad input."""
from typing import Any

import numpy as np
import pytest
import torch

from engine.errors import InputError, JobCancelled
from engine.pipelines.base import CancelToken
from engine.pipelines.pose import pipeline as pose_pipeline_module
from engine.pipelines.pose.pipeline import PosePipeline
from engine.pipelines.pose.spec import SPEC
from engine.tasks import Options
from tests.tolerance import assert_relative_close


def clip(frames: int, seed: int = 0, size: int = 64) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"reference": rng.integers(0, 256, (80, 72, 3), dtype=np.uint8),
            "motion": [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(frames)]}


SMALL = {"size": 64, "steps": 1, "context": 2, "overlap": 1}  # two frames: one window


def options(given: dict[str, Any]) -> Options:
    return SPEC.parse_options(given)


def test_twenty_frames_run_three_windows_with_wrap_around(pose_pipeline: PosePipeline,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    schedules, calls, reports = [], [], []

    def spy_schedule(*args: Any) -> list[list[int]]:
        schedules.append(pose_pipeline_module.window_schedule.__wrapped__(*args))
        return schedules[-1]

    spy_schedule.__wrapped__ = pose_pipeline_module.window_schedule
    monkeypatch.setattr(pose_pipeline_module, "window_schedule", spy_schedule)
    hook = pose_pipeline.unet.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape)))
    try:
        frames = pose_pipeline(clip(20), options({"size": 64, "steps": 2, "guidance": 7.5, "seed": 1}),
                               progress=lambda f, m: reports.append((f, m)))
    finally:
        hook.remove()
    assert schedules == [[list(range(16)), list(range(12, 28)), [*range(24, 32), *range(8)]]]
    assert calls == [(2, 4, 16, 8, 8)] * 6  # 2 steps x 3 windows, uncond + cond halves of 16 frames
    assert frames.shape == (20, 64, 64, 3) and frames.dtype == np.uint8 and frames.std() > 2
    assert [m for _, m in reports[:3]] == ["Encoding the reference, denoising", "Denoising step 1/2",
                                           "Denoising step 2/2"]
    assert reports[1][0] == pytest.approx(0.45) and reports[-1][0] == pytest.approx(1.0)
    assert all(a[0] <= b[0] for a, b in zip(reports, reports[1:]))


def test_same_seed_same_frames_and_inputs_matter(pose_pipeline: PosePipeline) -> None:
    first = pose_pipeline(clip(2), options({**SMALL, "seed": 7}))
    assert first.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(first, pose_pipeline(clip(2), options({**SMALL, "seed": 7})))
    assert np.abs(first.astype(int) - pose_pipeline(clip(2), options({**SMALL, "seed": 8}))).max() > 2
    other_reference = {**clip(2), "reference": clip(3, seed=5)["reference"]}
    assert np.abs(first.astype(int) - pose_pipeline(other_reference, options({**SMALL, "seed": 7}))).max() > 0


def test_guidance_one_is_the_conditional_prediction(pose_pipeline: PosePipeline) -> None:
    captured = []
    hook = pose_pipeline.unet.register_forward_hook(lambda m, a, out: captured.append(out))
    try:
        pose_pipeline(clip(2), options({**SMALL, "seed": 3, "guidance": 1.0}))
        pose_pipeline(clip(2), options({**SMALL, "seed": 3, "guidance": 2.0}))
    finally:
        hook.remove()
    single, pair = captured
    assert single.shape[0] == 1 and pair.shape[0] == 2
    assert_relative_close(single[0], pair[1])  # the cond half reads the reference
    assert (pair[0] - pair[1]).abs().max() > 1e-4


def test_cancel_before_start_and_between_steps(pose_pipeline: PosePipeline) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        pose_pipeline(clip(2), options(SMALL), cancel=token)
    token, steps = CancelToken(), []

    def cancel_after_first_step(fraction: float, message: str) -> None:
        steps.append(message)
        if message.startswith("Denoising step"):
            token.cancel()

    with pytest.raises(JobCancelled):
        pose_pipeline(clip(2), options({**SMALL, "steps": 3}), progress=cancel_after_first_step, cancel=token)
    assert steps == ["Encoding the reference, denoising", "Denoising step 1/3"]


@pytest.mark.parametrize(("inputs", "given", "match"), [
    (clip(2, size=48), {"size": 64}, "resize the DensePose video"),
    ({"reference": clip(1)["reference"], "motion": []}, {"size": 64}, "no frames"),
    ({"reference": clip(1)["reference"].astype(np.float32), "motion": clip(1)["motion"]}, {"size": 64}, "uint8"),
    ({"motion": clip(1)["motion"]}, {"size": 64}, "reference image"),
    (clip(1), {"size": 96}, "multiple of 64"),
    (clip(1), {"size": 64, "overlap": 16}, "overlap"),
    (clip(1), {"size": 64, "context": 32}, "context"),
    (clip(1), {"size": 64, "guidance": 0.5}, "guidance"),
    (clip(1), {"size": 64, "steps": "many"}, "steps must be int"),
    (clip(1), {"size": 64, "strength": 1}, "Unknown option"),
])
def test_bad_input_is_an_input_error(pose_pipeline: PosePipeline, inputs: dict, given: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        pose_pipeline(inputs, options(given))


def test_bench_times_the_requested_steps_over_all_windows():
    from engine import bench
    from engine.pipelines.pose.spec import SPEC

    report = bench.run(SPEC, device="cpu", size="tiny", frames=20, steps=1)
    results = report["results"]
    assert report["settings"] == {"frames": 20, "steps": 1} and results["windows"] == 3 and results["resolution"] == 64
    assert results["s_per_step"] == report["timings_s"]["denoise"] > 0 and report["peak_memory_gib"] > 0
    assert results["s_per_frame_25_steps"] > 25 * results["s_per_step"] / 20


def test_model_offload_stages_each_network_and_keeps_the_result(pose_folders, pose_pipeline: PosePipeline) -> None:
    from tests.offload_check import run_checking_stages

    offloaded = PosePipeline.load(pose_folders, "cpu", torch.float32, offload="model")
    frames = run_checking_stages(offloaded.offload, offloaded.networks(),
                                 lambda: offloaded(clip(3), options({**SMALL, "seed": 3})))
    np.testing.assert_array_equal(frames, pose_pipeline(clip(3), options({**SMALL, "seed": 3})))


def test_residual_size_estimate_matches_the_controlnet_outputs(pose_pipeline: PosePipeline) -> None:
    latents = torch.randn(1, 4, 3, 8, 8)
    condition = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    text = pose_pipeline._empty_prompt()
    with torch.no_grad():
        residuals = pose_pipeline._controlnet(latents, torch.tensor(10), text, condition, [0, 2], torch.device("cpu"))
    actual = sum(r.numel() * r.element_size() for r in residuals) // 2
    assert pose_pipeline._residual_bytes_per_frame(latents) == actual


def test_long_clips_recompute_residuals_per_window_with_the_same_result(pose_pipeline: PosePipeline,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    given = options({"size": 64, "steps": 2, "context": 4, "overlap": 1, "seed": 2})
    # compare the final latents: rounding to uint8 frames would hide small differences
    monkeypatch.setattr(pose_pipeline, "_decode", lambda latents, progress, cancel: latents.numpy())
    calls: list[int] = []
    hook = pose_pipeline.controlnet.register_forward_pre_hook(lambda m, args: calls.append(len(args[0])))
    try:
        cached = pose_pipeline(clip(7), given)
        assert calls == [4, 4] * 2  # 8 padded frames in chunks of 4, per step
        calls.clear()
        monkeypatch.setattr(pose_pipeline_module, "RESIDUAL_CACHE_BYTES", 0)
        recomputed = pose_pipeline(clip(7), given)
    finally:
        hook.remove()
    assert calls == [4, 4, 4] * 2  # one ControlNet pass per window: 3 windows (with wrap-around), per step
    assert_relative_close(recomputed, cached)


def test_decode_runs_the_vae_per_frame_in_chunks_and_rounds_to_uint8(pose_pipeline: PosePipeline) -> None:
    from engine.pipelines.base import no_progress
    from engine.pipelines.pose.pipeline import DECODE_CHUNK, LATENT_SCALE

    frames = DECODE_CHUNK + 2  # a full chunk and a partial one
    latents = torch.randn(1, 4, frames, 8, 8, generator=torch.Generator().manual_seed(0))
    decoded = pose_pipeline._decode(latents, no_progress, CancelToken())
    assert decoded.shape == (frames, 64, 64, 3) and decoded.dtype == np.uint8
    with torch.no_grad():
        for index in (0, frames - 1):
            image = pose_pipeline.vae.decode(latents[:, :, index] / LATENT_SCALE).sample[0]
            expected = ((image / 2 + 0.5).clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
            assert np.abs(decoded[index].astype(int) - expected).max() <= 1  # batching may move a rounding edge
    assert decoded.std() > 2
