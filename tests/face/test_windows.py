"""Periodic sampling, stated independently of windows.py: MOFA-Keypoint's view list (duplicates kept), frame weights,
averaging by count and one sigma per step for every window."""
import pytest
import torch
from diffusers import EulerDiscreteScheduler

from engine.pipelines.face.windows import Window, accumulate, periodic_windows, step_windows
from engine.pipelines.motion.tiny import SVD_SCHEDULER
from tests.tolerance import assert_relative_close


def original_views(frames: int) -> list[tuple[int, int]]:
    """The view list exactly as svdxt_pipeline_ctrlnet_loop.py writes it (window 25, stride 12)."""
    count = (frames - 25) // 12 + 1
    return [(1 + i * 12, i * 12 + 25) for i in range(count)] + [(frames - 25 + 1, frames)]


def frame_weights(windows: list[Window], frames: int) -> list[int]:
    weights = [0] * frames
    for i, window in enumerate(windows):
        for repeat in range(window.weight):
            first = 0 if i == 0 and repeat == 0 else window.start
            for f in range(first, window.end):
                weights[f] += 1
    return weights


@pytest.mark.parametrize("frames, expected", [
    (25, [Window(1, 25, 2)]),  # the original runs (1, 25) twice
    (30, [Window(1, 25), Window(6, 30)]),
    (37, [Window(1, 25), Window(13, 37, 2)]),  # the last view repeats the one before it
    (100, [Window(1 + 12 * i, 12 * i + 25) for i in range(7)] + [Window(76, 100)]),
])
def test_schedule_matches_the_original_view_list(frames, expected):
    windows = periodic_windows(frames)
    assert windows == expected
    listed = [(w.start, w.end) for w in windows for _ in range(w.weight)]
    assert listed == original_views(frames)
    assert all(len(w) == 25 for w in windows)


def test_frame_weights_for_37_frames():
    weights = frame_weights(periodic_windows(37), 37)
    assert weights[0] == 1 and set(weights[1:13]) == {1}
    assert set(weights[13:25]) == {3}  # 1/3 each from (1,25) and twice (13,37)
    assert set(weights[25:37]) == {2}


@pytest.mark.parametrize("frames", [2, 3, 24])
def test_short_clips_are_one_window_of_all_frames(frames):
    assert periodic_windows(frames) == [Window(1, frames)]


def test_fewer_than_two_frames_is_refused():
    with pytest.raises(ValueError):
        periodic_windows(1)


def test_window_takes_frame_zero_and_its_run():
    frames = torch.arange(30.0).view(1, 30)
    window = Window(6, 30)
    assert window.take(frames).tolist() == [[0.0] + list(range(6, 30))]
    flows = torch.arange(29.0).view(1, 29)  # flow i: frame 0 -> frame i + 1
    assert window.take_flows(flows).tolist() == [list(range(5, 29))]


def test_results_are_averaged_by_count():
    value, count = torch.zeros(1, 37), torch.zeros(1, 37)
    windows = periodic_windows(37)
    for i, (window, level) in enumerate(zip(windows, (1.0, 4.0))):
        accumulate(value, count, window, torch.full((1, 25), level), first=i == 0)
    average = (value / count)[0]
    assert average[:13].tolist() == [1.0] * 13  # frame 0 only from the first window
    assert_relative_close(average[13:25], torch.full((12,), 3.0))  # (1 + 4 + 4) / 3
    assert average[25:].tolist() == [4.0] * 12


def _scheduler(steps: int = 3) -> EulerDiscreteScheduler:
    scheduler = EulerDiscreteScheduler.from_config(SVD_SCHEDULER)
    scheduler.set_timesteps(steps)
    return scheduler


def test_every_window_steps_at_the_same_sigma():
    scheduler = _scheduler()
    latents = torch.randn(1, 37, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    seen = []

    def predict(part, t, window):
        seen.append(scheduler.step_index)
        return torch.ones_like(part)

    for t in scheduler.timesteps[:2]:
        latents = step_windows(scheduler, latents, t, periodic_windows(37), predict)
    assert seen == [None, 0, 1, 1]  # the first window initialises the index; all windows of a step share it
    assert scheduler.step_index == 2


def test_one_window_equals_a_plain_scheduler_step():
    latents = torch.randn(1, 25, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    windowed, plain = _scheduler(), _scheduler()
    t = windowed.timesteps[0]
    output = torch.randn(1, 25, 4, 2, 2, generator=torch.Generator().manual_seed(2))
    stepped = step_windows(windowed, latents, t, periodic_windows(25), lambda part, t, w: output)
    expected = plain.step(output, t, latents).prev_sample
    assert torch.equal(stepped, expected)  # (x + x) / 2 == x exactly


def test_overlapping_windows_average_their_steps():
    """Two windows at one sigma: where they overlap, the mean of each window's Euler step of the same latents."""
    scheduler, reference = _scheduler(), _scheduler()
    t = scheduler.timesteps[0]
    latents = torch.randn(1, 30, 4, 2, 2, generator=torch.Generator().manual_seed(3))
    outputs = {1: torch.full((1, 25, 4, 2, 2), 0.5), 6: torch.full((1, 25, 4, 2, 2), -0.25)}
    result = step_windows(scheduler, latents, t, periodic_windows(30), lambda part, t, w: outputs[w.start])
    first = reference.step(outputs[1], t, latents[:, :25]).prev_sample
    reference._step_index -= 1
    second = reference.step(outputs[6], t, torch.cat([latents[:, :1], latents[:, 6:]], 1)).prev_sample
    assert torch.equal(result[:, :6], first[:, :6])
    assert_relative_close(result[:, 6:25], (first[:, 6:25] + second[:, 1:20]) / 2)
    assert torch.equal(result[:, 25:], second[:, 20:])
