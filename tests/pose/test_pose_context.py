"""Window schedule, padding, noise tiling and per-frame averaging of the sliding-window sampler."""
import pytest
import torch

from engine.pipelines.pose.context import WindowAverage, padded_length, tiled_noise, window_schedule


def test_schedule_32_frames_wraps_around() -> None:
    assert window_schedule(32, 16, 4) == [list(range(16)), list(range(12, 28)), [*range(24, 32), *range(8)]]


def test_20_frames_pad_to_32_and_give_three_windows() -> None:
    total = padded_length(20, 16)
    assert total == 32
    windows = window_schedule(total, 16, 4)
    assert len(windows) == 3 and windows[-1][:8] == list(range(24, 32)) and windows[-1][8:] == list(range(8))


@pytest.mark.parametrize(("frames", "expected"), [(1, 16), (16, 16), (17, 32), (48, 48)])
def test_padding_is_next_multiple_of_window(frames: int, expected: int) -> None:
    assert padded_length(frames, 16) == expected


def test_short_clip_is_one_window_and_long_clip_starts_every_12() -> None:
    assert window_schedule(16, 16, 4) == [list(range(16))]
    windows = window_schedule(48, 16, 4)
    assert [w[0] for w in windows] == [0, 12, 24, 36]
    assert windows[-1] == [*range(36, 48), *range(4)]
    assert all(len(w) == 16 for w in windows)


def test_overlap_must_be_smaller_than_window() -> None:
    with pytest.raises(ValueError):
        window_schedule(32, 16, 16)


def test_noise_is_one_block_tiled_and_seeded() -> None:
    noise = tiled_noise((1, 4, 16, 8, 8), 48, torch.Generator().manual_seed(3), torch.float32)
    assert noise.shape == (1, 4, 48, 8, 8)
    assert torch.equal(noise[:, :, :16], noise[:, :, 16:32]) and torch.equal(noise[:, :, :16], noise[:, :, 32:])
    assert not torch.equal(noise[:, :, 0], noise[:, :, 1])
    again = tiled_noise((1, 4, 16, 8, 8), 48, torch.Generator().manual_seed(3), torch.float32)
    assert torch.equal(noise, again)
    block = torch.randn((1, 4, 16, 8, 8), generator=torch.Generator().manual_seed(3))
    assert torch.equal(noise[:, :, :16], block)  # same draw as the original's single randn call


def test_window_average_divides_by_coverage() -> None:
    like = torch.zeros(2, 1, 32, 1, 1)
    average = WindowAverage(like)
    for value, window in enumerate(window_schedule(32, 16, 4), start=1):
        average.add(window, torch.full((2, 1, 16, 1, 1), float(value)))
    mean = average.mean()[0, 0, :, 0, 0]
    # frames 0-7: windows 1 and 3; 8-11: only 1; 12-15: 1 and 2; 16-23: only 2; 24-27: 2 and 3; 28-31: only 3
    expected = [2.0] * 8 + [1.0] * 4 + [1.5] * 4 + [2.0] * 8 + [2.5] * 4 + [3.0] * 4
    assert mean.tolist() == expected
