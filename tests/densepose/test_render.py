"""Label maps and their rendering: detectron2's per-box resampling, MagicAnimate's viridis colours (exact), the
framing, filling and smoothing of a clip, and telling a DensePose video from an ordinary one."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine import media
from engine.errors import InputError
from engine.pipelines.densepose.clip import (ClipLabels, Patch, filled, framed_labels, smoothed, square_region,
                                             tracked_regions)
from engine.pipelines.densepose.model import box_labels, int_box, network_size
from engine.pipelines.densepose.render import colourise, majority, nearest_resize, paste
from engine.pipelines.pose.palette import PART_COLOURS, looks_like_densepose


def test_part_colours_are_opencvs_viridis_at_the_visualisers_levels() -> None:
    levels = (np.arange(25) * 255 / 24).astype(np.uint8)  # detectron2's val_scale 255 / 24, then uint8
    opencv = cv2.applyColorMap(levels[None], cv2.COLORMAP_VIRIDIS)[0, :, ::-1]
    assert np.array_equal(PART_COLOURS, opencv)
    assert tuple(colourise(np.zeros((1, 1), np.uint8))[0, 0]) == (68, 1, 84)  # background: viridis(0), opaque


def test_box_labels_take_fine_parts_where_coarse_says_foreground() -> None:
    coarse = torch.zeros(2, 2, 2)
    coarse[1, :, 1] = 1.0  # right column foreground
    fine = torch.zeros(25, 2, 2)
    fine[7, 0, :] = 1.0  # top row part 7
    fine[3, 1, :] = 1.0  # bottom row part 3
    labels = box_labels(coarse, fine, 2, 2)  # same size: the bilinear resize changes nothing
    assert labels.tolist() == [[0, 7], [0, 3]]
    assert box_labels(coarse, fine, 4, 6).shape == (6, 4)  # resized to the box: h x w
    assert box_labels(coarse, fine, 0, 0).shape == (1, 1)


def test_int_box_truncates_xywh_like_make_int_box() -> None:
    assert int_box(torch.tensor([10.7, 5.2, 30.1, 20.9])) == (10, 5, 19, 15)  # w = int(19.4), h = int(15.7)


def test_network_size_matches_resize_shortest_edge() -> None:
    assert network_size(480, 640) == (800, 1067)
    assert network_size(1080, 1920) == (750, 1333)  # capped by the longest side
    assert network_size(512, 512) == (800, 800)


def test_paste_paints_parts_only_and_cuts_at_the_border() -> None:
    canvas = np.full((3, 4), 9, np.uint8)
    paste(canvas, np.array([[0, 1], [2, 0]], np.uint8), 3, 2)
    assert canvas.tolist() == [[9, 9, 9, 9], [9, 9, 9, 9], [9, 9, 9, 9]]  # only the 0s fall inside
    paste(canvas, np.array([[0, 1], [2, 0]], np.uint8), -1, 1)
    assert canvas.tolist() == [[9, 9, 9, 9], [1, 9, 9, 9], [0 + 9, 9, 9, 9]]


def test_nearest_resize_keeps_labels() -> None:
    labels = np.array([[1, 2], [3, 4]], np.uint8)
    assert nearest_resize(labels, 4).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert nearest_resize(np.arange(16, dtype=np.uint8).reshape(4, 4), 2).tolist() == [[5, 7], [13, 15]]


def test_majority_prefers_the_centre_frame_on_ties() -> None:
    a, b = np.full((1, 2), 1, np.uint8), np.full((1, 2), 2, np.uint8)
    assert majority([a, b, b], 0).tolist() == [[2, 2]]
    assert majority([a, b], 0).tolist() == [[1, 1]] and majority([a, b], 1).tolist() == [[2, 2]]


def test_smoothing_keeps_the_frame_count_and_removes_a_one_frame_flicker() -> None:
    frames = [np.full((2, 2), 5, np.uint8) for _ in range(5)]
    frames[2] = np.full((2, 2), 6, np.uint8)
    out = list(smoothed(iter(frames), 1))
    assert len(out) == 5 and all((frame == 5).all() for frame in out)
    assert [f.tolist() for f in smoothed(iter(frames), 0)] == [f.tolist() for f in frames]
    assert len(list(smoothed(iter(frames[:2]), 3))) == 2


def patch(x: int, y: int, labels: list[list[int]]) -> Patch:
    return Patch.of(np.array(labels, np.uint8), x, y)


def test_frames_without_a_person_take_the_nearest_one() -> None:
    p1, p2 = patch(0, 0, [[1]]), patch(0, 0, [[2]])
    assert filled([None, p1, None, None, p2, None], "v.mp4") == [p1, p1, p1, p2, p2, p2]  # a tie goes earlier
    with pytest.raises(InputError, match="No person was found in any frame of 'v.mp4'"):
        filled([None, None], "v.mp4")
    clip = ClipLabels(4, 4, 25.0, [None, p1, None], most_people=2)
    assert clip.counts() == {"frames": 3, "frames_without_person": 2, "most_people_in_a_frame": 2}


def test_square_regions_follow_the_union_or_crop_or_pad() -> None:
    clip = ClipLabels(100, 200, 25.0)
    patches = [patch(50, 20, [[1] * 10] * 20), patch(70, 30, [[1] * 10] * 20)]  # union x 50..80, y 20..50
    assert square_region(clip, patches, "follow", 0.0) == (50, 20, 30)
    assert square_region(clip, patches, "follow", 0.5) == (35, 5, 60)  # 30 + 2 * 15, same centre
    assert square_region(clip, patches, "centre", 0.1) == (50, 0, 100)
    assert square_region(clip, patches, "pad", 0.1) == (0, -50, 200)


def test_tracking_keeps_the_side_and_averages_the_centres() -> None:
    patches = [patch(x, 10, [[1] * 10] * 20) for x in (0, 10, 20, 60)]  # 10 x 20 boxes, centres x 5, 15, 25, 65
    regions = tracked_regions(patches, 0.0, radius=1)
    assert [side for _, _, side in regions] == [20] * 4  # the largest box side, no margin
    # centres: the means of 5, 15 | 5, 15, 25 | 15, 25, 65 | 25, 65
    assert [x + side / 2 for x, _, side in regions] == [10, 15, 35, 45]
    assert {y for _, y, _ in regions} == {10}  # centre y 20, side 20
    clip = ClipLabels(40, 80, 2.0, patches)  # 2 fps: radius round(2 / 2) = 1
    assert len(list(framed_labels(clip, "v.mp4", "track", 8, 0.0))) == 4


def test_framed_labels_cut_and_resize_each_frame() -> None:
    clip = ClipLabels(4, 4, 25.0, [patch(1, 1, [[3, 4], [5, 6]]), None])
    frames = list(framed_labels(clip, "v.mp4", "follow", 4, 0.0))
    assert [f.tolist() for f in frames] == [[[3, 3, 4, 4], [3, 3, 4, 4], [5, 5, 6, 6], [5, 5, 6, 6]]] * 2
    padded = next(framed_labels(clip, "v.mp4", "pad", 4, 0.0))
    assert padded.tolist() == [[0, 0, 0, 0], [0, 3, 4, 0], [0, 5, 6, 0], [0, 0, 0, 0]]


def test_auto_detection_tells_a_rendered_densepose_video_from_an_ordinary_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 25, (8, 8)), np.ones((8, 8), int)).astype(np.uint8)
    media.write_mp4(tmp_path / "dp.mp4", [colourise(labels)] * 2, 25)
    ordinary = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (64, 64))
    media.write_mp4(tmp_path / "video.mp4", [ordinary] * 2, 25)
    assert looks_like_densepose(media.read_video(tmp_path / "dp.mp4")[0][0])  # after H.264 too
    assert not looks_like_densepose(media.read_video(tmp_path / "video.mp4")[0][0])
