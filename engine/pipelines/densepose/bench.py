"""Speed and memory of DensePose extraction per frame, with random weights (nothing is downloaded): the pipeline's
own detection path (resize, R-CNN, DensePose head on the chosen person, label map) on a 512x512 frame and on a
1920x1080 one; "full" is DensePose R-CNN R_50_FPN at the test resize (800 / 1333), "tiny" the test model at the
tests' detection size."""
from __future__ import annotations

import numpy as np
import torch

from engine.bench import Harness, Measurements
from engine.pipelines.densepose.model import DensePoseRCNN, ModelConfig
from engine.pipelines.densepose.pipeline import DensePosePipeline, chooser, people_patch
from engine.pipelines.densepose.spec import SPEC
from engine.pipelines.densepose.tiny import PERSON_BIAS, TINY, TINY_DETECT_SIZE

SETTINGS = {"frames": 2}  # frames timed at each resolution (after one untimed warm-up frame)
RESOLUTIONS = {"512": (512, 512), "1080p": (1080, 1920)}
DEFAULTS = SPEC.parse_options()


def bench(harness: Harness, size: str, frames: int) -> Measurements:
    config = ModelConfig() if size == "full" else TINY
    model = harness.network(lambda: DensePoseRCNN(config))
    with torch.no_grad():  # random weights find no one; favour "person" so the DensePose branch runs too
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([PERSON_BIAS / 2, -PERSON_BIAS / 2]))
    pipe = DensePosePipeline(model, harness.device, harness.dtype).with_offload(harness.offload)
    choose = chooser(DEFAULTS.person)
    detect_size = DEFAULTS.detect_size if size == "full" else TINY_DETECT_SIZE
    rng = np.random.default_rng(0)
    results: Measurements = {"detect_size": detect_size}
    for name, (height, width) in RESOLUTIONS.items():
        frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)

        def one(frame: np.ndarray = frame) -> int:
            people = pipe.detect([frame], DEFAULTS.min_score, choose, detect_size)[0]
            people_patch(people)
            return people.found

        one()
        harness.reset_peak()
        with harness.timer(name):
            found = [one() for _ in range(frames)]
        results[f"s_per_frame_{name}"] = round(harness.timings[name] / frames, 4)
        results[f"people_found_{name}"] = max(found)
    return results
