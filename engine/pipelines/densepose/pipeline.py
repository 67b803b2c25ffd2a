"""DensePose extraction, phase one: decode the video frame by frame (resampled to the output frame rate), detect
people with DensePose R-CNN, keep the chosen person's part labels inside their box (compressed). The job (or the
pose job) then frames, fills, smooths and renders them (engine/pipelines/densepose/clip.py)."""
from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from engine import limits, media
from engine.errors import CheckpointError, InputError
from engine.offload import ModelOffload
from engine.pipelines.base import CancelToken, Pipeline, Progress, no_progress
from engine.pipelines.densepose.checkpoint import WEIGHTS, read_state
from engine.pipelines.densepose.clip import ClipLabels, Patch
from engine.pipelines.densepose.model import (Chooser, DensePoseRCNN, Detections, SHORT_EDGE, box_labels,
                                              config_from_state, everyone, int_box, resize_for_network)
from engine.pipelines.densepose.render import paste
from engine.runtime import ModelCache, NetworkKey, cached_network
from engine.tasks import Options
from engine.weights import assign_strict, build_on_meta


def load_network(file: Path, device: Any, dtype: torch.dtype, networks: ModelCache | None = None) -> DensePoseRCNN:
    """The model-zoo pickle (restricted unpickler) into DensePoseRCNN, strictly, through the network cache."""
    def build() -> DensePoseRCNN:
        state = read_state(file)
        try:
            config = config_from_state(state)
        except (KeyError, IndexError) as err:
            raise CheckpointError(f"{file} is not a DensePose R-CNN R_50_FPN checkpoint (no {err}). Delete it and "
                                  "download the 'densepose' checkpoint again.") from err
        model = build_on_meta(lambda: DensePoseRCNN(config))
        return assign_strict(model, state, str(file), device, dtype)

    return cached_network(networks, NetworkKey.of(file, DensePoseRCNN, device, dtype), build)


def chooser(person: int) -> Chooser:
    """Which detections to keep: -1 all (as apply_net), 0 the largest box, n >= 1 the n-th from the left (by box
    centre; none when fewer were found)."""
    def choose(boxes: torch.Tensor) -> list[int]:
        if len(boxes) == 0 or person < 0:
            return list(range(len(boxes)))
        if person == 0:
            return [int(torch.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))]
        order = torch.argsort(boxes[:, 0] + boxes[:, 2], stable=True).tolist()
        return [order[person - 1]] if person <= len(order) else []

    return choose


def people_patch(detections: Detections) -> Patch | None:
    """The detections' part labels painted, in detection order, into one patch over their boxes."""
    parts = []
    for index in range(len(detections)):
        x, y, w, h = int_box(detections.boxes[index])
        if w > 0 and h > 0:  # the visualiser skips empty integer boxes
            labels = box_labels(detections.coarse[index], detections.fine[index], w, h)
            parts.append((x, y, labels.cpu().numpy()))
    if not parts:
        return None
    left, top = min(x for x, _, _ in parts), min(y for _, y, _ in parts)
    right = max(x + labels.shape[1] for x, _, labels in parts)
    bottom = max(y + labels.shape[0] for _, y, labels in parts)
    canvas = np.zeros((bottom - top, right - left), dtype=np.uint8)
    for x, y, labels in parts:
        paste(canvas, labels, x - left, y - top)
    return Patch.of(canvas, left, top)


class DensePosePipeline(Pipeline):
    """DensePose R-CNN over a video: __call__ returns the clip's ClipLabels."""

    def __init__(self, model: DensePoseRCNN, device: Any, dtype: Any) -> None:
        self.model, self.device, self.dtype = model, torch.device(device), dtype
        self.offload = ModelOffload(device)
        self.batch = 4 if self.device.type == "cuda" else 1  # frames per forward pass

    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: Any = None) -> "DensePosePipeline":
        model = load_network(Path(paths["densepose"]) / WEIGHTS, device, dtype, networks)
        return cls(model, device, dtype).with_offload(offload, networks)

    def networks(self) -> dict[str, Any]:
        return {"densepose": self.model}

    def detect(self, frames: list[np.ndarray], min_score: float, choose: Chooser = everyone,
               short: int = SHORT_EDGE) -> list[Detections]:
        """The chosen people of RGB uint8 frames (boxes in the frames' pixels), detected at shortest side `short`."""
        with self.offload.on_device(self.model):
            return self.model([resize_for_network(f, short) for f in frames], [f.shape[:2] for f in frames],
                              min_score, choose)

    def __call__(self, inputs: Mapping[str, Any], options: Options, progress: Progress = no_progress,
                 cancel: CancelToken | None = None) -> ClipLabels:
        """inputs: {"video": path}. options: fps, person, min_score, detect_size (the densepose task's, or the
        pose task's)."""
        path = Path(inputs["video"])
        info = media.video_info(path)
        clip = ClipLabels(info.height, info.width, float(options.fps))
        expected = media.resampled_count(info.frames, info.fps, options.fps) if info.frames else 0
        pending: list[tuple[np.ndarray, int]] = []  # (frame, how many output frames show it)

        def flush() -> None:
            if cancel is not None:
                cancel.check()
            frames = [frame for frame, _ in pending]
            for (_, repeats), people in zip(pending, self.detect(frames, options.min_score, chooser(options.person),
                                                               options.detect_size)):
                clip.most_people = max(clip.most_people, people.found)
                clip.patches.extend([people_patch(people)] * repeats)
            pending.clear()
            if expected:
                progress(min(len(clip.patches) / expected, 1.0) * 0.95,
                         f"Extracting DensePose: frame {len(clip.patches)} of {expected}")

        decoded = 0
        with closing(media.iter_video(path)) as decoding:
            for frame, repeats in resampled_frames(decoding, info.fps, options.fps):
                decoded += 1
                if decoded == 1:  # the decoded size (a container's header can disagree)
                    clip.frame_height, clip.frame_width = frame.shape[:2]
                if media.resampled_count(decoded, info.fps, options.fps) > limits.current().max_video_frames:
                    raise InputError(f"Video '{path.name}' is too long (at least {decoded} frames at {info.fps:g} "
                                     f"fps; at most {limits.current().max_video_frames} frames at {options.fps:g} "
                                     "fps). Trim it or lower the fps option.")
                if repeats:
                    pending.append((frame, repeats))
                if len(pending) >= self.batch:
                    flush()
        if pending:
            flush()
        del clip.patches[media.resampled_count(decoded, info.fps, options.fps):]
        if not clip.patches:
            raise InputError(f"Video '{path.name}' contains no frames.")
        return clip


PIPELINE = DensePosePipeline


def resampled_frames(frames: Iterator[np.ndarray], source_fps: float, fps: float
                     ) -> Iterator[tuple[np.ndarray, int]]:
    """Each decoded frame with the number of output frames at `fps` that show it (media.resample_indices, computed
    as frames arrive; the caller trims the end once the count is known)."""
    if abs(fps - source_fps) < 1e-6:
        for frame in frames:
            yield frame, 1
        return
    shown = 0  # next output frame
    for index, frame in enumerate(frames):
        repeats = 0
        while int(np.floor(shown * source_fps / fps + 1e-9)) == index:
            repeats += 1
            shown += 1
        yield frame, repeats
