"""A tiny DensePose R-CNN in the published layout, for tests: `DensePose/model_final_162be9.pkl`, a plain pickle of
`{"model": {name: float32 array}, "__author__": ...}` with the real key names (ResNet-50's block counts, 8 head
convs) at tiny widths, random weights. The box classifier's bias favours "person" so frames yield detections and the
label-map path runs; the coarse segmentation's bias favours foreground so the boxes get body parts."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from engine.pipelines.densepose.backbone import BackboneConfig, FrozenBatchNorm2d
from engine.pipelines.densepose.checkpoint import WEIGHTS
from engine.pipelines.densepose.model import DensePoseRCNN, ModelConfig
from engine.pipelines.densepose.roi_heads import HeadConfig
from engine.testing.weights import randomise

TINY = ModelConfig(BackboneConfig(stem=8, bottleneck=4, res2_out=16, fpn=16),
                   HeadConfig(channels=16, fc=32, decoder=16, dp_dim=16))
TINY_DETECT_SIZE = 128  # detection size of the tiny runs (the published model's is 800): keeps tests quick
PERSON_BIAS = 8.0  # person logit minus background logit: scores near 1, above the 0.8 threshold


def tiny_network(seed: int = 0, config: ModelConfig = TINY) -> DensePoseRCNN:
    """Random weights everywhere, frozen batch norm statistics included."""
    generator = torch.Generator().manual_seed(seed)
    model = randomise(DensePoseRCNN(config), generator)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, FrozenBatchNorm2d):
                count = layer.weight.shape[0]
                layer.weight.copy_(1 + 0.1 * torch.randn(count, generator=generator))
                layer.bias.copy_(0.1 * torch.randn(count, generator=generator))
                layer.running_mean.copy_(0.1 * torch.randn(count, generator=generator))
                layer.running_var.copy_(0.5 + 0.5 * torch.rand(count, generator=generator))
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([PERSON_BIAS / 2, -PERSON_BIAS / 2]))
        predictor = model.roi_heads.densepose_predictor
        predictor.ann_index_lowres.bias.copy_(torch.tensor([-1.0, 1.0]))  # foreground
        predictor.index_uv_lowres.weight.mul_(30.0)  # parts vary across the box, not one bias-chosen label
    return model.eval()


def write_pickle(path: Path, model: torch.nn.Module) -> None:
    """The model-zoo layout: float32 numpy arrays under "model"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: tensor.detach().float().numpy() for name, tensor in model.state_dict().items()}
    with open(path, "wb") as stream:
        pickle.dump({"model": arrays, "__author__": "tiny test model"}, stream, protocol=4)  # as published


def write_tiny_checkpoints(folders: dict[str, Path], seed: int = 0) -> None:
    write_pickle(Path(folders["densepose"]) / WEIGHTS, tiny_network(seed))


def person_video(path: Path, frames: int = 3, size: tuple[int, int] = (48, 64)) -> Path:
    """An ordinary (not DensePose-coloured) synthetic clip: a bright figure moving over a textured background."""
    from engine import media

    rng = np.random.default_rng(0)
    height, width = size
    background = rng.integers(90, 160, (height, width, 3), dtype=np.uint8)
    clip = []
    for t in range(frames):
        frame = background.copy()
        x = width // 4 + 3 * t
        frame[height // 6:height - height // 6, x:x + width // 4] = (220, 180, 150)
        clip.append(frame)
    media.write_mp4(path, clip, 25)
    return path


def tiny_inputs(folder: Path) -> tuple[dict[str, object], dict[str, object]]:
    """An ordinary synthetic clip and small options for a quick run on the tiny model (the contract test)."""
    return {"video": person_video(folder / "person.mp4")}, {"size": 64, "detect_size": TINY_DETECT_SIZE}
