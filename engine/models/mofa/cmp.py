"""CMP (Conditional Motion Propagation): sparse flow hints + image -> dense flow.

Architecture of MOFA's `resnet50_vip+mpii_liteflow` CMP (Zhan et al., CVPR 2019): a ResNet-50 image
encoder with dilated layer3/layer4 (output stride 8) and a 1x1 `conv5` to 256 channels, a
"ShallowNet8x" encoder of the 4-channel sparse input (flow x/y + mask x/y), and the skip-layer motion
decoder that predicts 2 x `nbins` logits at half resolution. A bin expectation turns them into flow in
pixels (clamped to +-fmax). Module names follow the published checkpoint (`image_encoder.layer1.0.conv1`,
`flow_encoder.features.4`, `flow_decoder.fusion8.0`, ...). Widths and depths are parameters so tests
can build a tiny model with the same key names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from engine.errors import CheckpointError
from engine.runtime import ModelCache, NetworkKey, cached_network
from engine.weights import load_pickle_safely

# Where MOFA's repos (MOFA-Video-Traj and MOFA-Video-Hybrid alike) keep CMP; iteration 42000: CMP_demo(...) in
# MOFA-Video-Traj/run_gradio.py@3ad3b546da4c and MOFA-Video-Keypoint/mofa_keypoint.py@3ad3b546da4c.
CMP_DIR = "models/cmp/experiments/semiauto_annot/resnet50_vip+mpii_liteflow"
CMP_CHECKPOINT = f"{CMP_DIR}/checkpoints/ckpt_iter_42000.pth.tar"
CMP_CONFIG = f"{CMP_DIR}/config.yaml"


@dataclass(frozen=True)
class CMPConfig:
    """Published values are the defaults (ResNet-50, 99 bins over +-50 px, 384x384 input).

    img_enc_dim 256, sparse_enc_dim 16, nbins 99, fmax 50, crop 384: MOFA-Video-Traj/models/cmp/experiments/
    semiauto_annot/resnet50_vip+mpii_liteflow/config.yaml@3ad3b546da4c; decoder width 128: MotionDecoderSkipLayer
    in MOFA-Video-Traj/models/cmp/models/modules/decoder.py@3ad3b546da4c."""

    base_width: int = 64
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    img_enc_dim: int = 256
    sparse_enc_dim: int = 16
    decoder_width: int = 128
    nbins: int = 99
    fmax: float = 50.0
    size: int = 384


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, padding: int = 1, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class Bottleneck(nn.Module):
    """ResNet bottleneck (stride on the 3x3 conv); `dilation` replaces striding in layer3/4."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class DilatedResNet(nn.Module):
    """ResNet trunk at output stride 8; returns conv5 features and the skips [image, conv1, layer1]."""

    def __init__(self, cfg: CMPConfig) -> None:
        super().__init__()
        width = cfg.base_width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._in = width
        # (planes, stride of the first block's downsample conv, dilation): layer2 strides, layer3/4 dilate.
        plan = ((width, 1, 1), (width * 2, 2, 1), (width * 4, 1, 2), (width * 8, 1, 4))
        for i, ((planes, stride, dilation), count) in enumerate(zip(plan, cfg.blocks), start=1):
            setattr(self, f"layer{i}", self._layer(planes, count, stride, dilation))
        self.conv5 = nn.Conv2d(self._in, cfg.img_enc_dim, 1)

    def _layer(self, planes: int, count: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self._in, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        blocks = [Bottleneck(self._in, planes, stride, dilation, downsample)]
        self._in = planes * 4
        blocks += [Bottleneck(self._in, planes, 1, dilation) for _ in range(count - 1)]
        return nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        conv1 = self.relu(self.bn1(self.conv1(image)))
        layer1 = self.layer1(self.maxpool(conv1))
        x = self.layer4(self.layer3(self.layer2(layer1)))
        return self.conv5(x), [image, conv1, layer1]


class ShallowNet8x(nn.Module):
    """Sparse-motion encoder: conv5x5/2, maxpool/2, conv3x3, avgpool/2 (keys features.0/1/4/5)."""

    def __init__(self, c_in: int = 4, c_out: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(c_in, 16, kernel=5, padding=2, stride=2), nn.MaxPool2d(2, 2),
            *_conv_bn_relu(16, c_out), nn.AvgPool2d(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class MotionDecoderSkipLayer(nn.Module):
    """Four pyramid-pooling branches (1/2/4/8), fused, then refined with conv1 and layer1 skips."""

    def __init__(self, c_in: int, c_out: int, width: int, skip4_channels: int, skip2_channels: int) -> None:
        super().__init__()
        for pool in (1, 2, 4, 8):
            layers = [] if pool == 1 else [nn.MaxPool2d(pool, pool)]
            layers += _conv_bn_relu(c_in, width) + _conv_bn_relu(width, width) + _conv_bn_relu(width, width)
            setattr(self, f"decoder{pool}", nn.Sequential(*layers))
        self.fusion8 = nn.Sequential(*_conv_bn_relu(4 * width, 2 * width))
        self.skipconv4 = nn.Sequential(*_conv_bn_relu(skip4_channels, width))
        self.fusion4 = nn.Sequential(*_conv_bn_relu(3 * width, width))
        self.skipconv2 = nn.Sequential(*_conv_bn_relu(skip2_channels, width // 4))
        self.fusion2 = nn.Sequential(*_conv_bn_relu(width + width // 4, width // 2))
        self.head = nn.Conv2d(width // 2, c_out, 1)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        _, conv1, layer1 = skips
        x1 = self.decoder1(x)
        pyramid = [x1] + [self._up(getattr(self, f"decoder{p}")(x), x1) for p in (2, 4, 8)]
        f8 = self.fusion8(torch.cat(pyramid, dim=1))
        f4 = self.fusion4(torch.cat([self._up(f8, layer1), self.skipconv4(layer1)], dim=1))
        f2 = self.fusion2(torch.cat([self._up(f4, conv1), self.skipconv2(conv1)], dim=1))
        return self.head(f2)


class CMPNet(nn.Module):
    """The network inside the checkpoint (its keys carry a `module.` prefix from the training wrapper)."""

    def __init__(self, cfg: CMPConfig) -> None:
        super().__init__()
        self.image_encoder = DilatedResNet(cfg)
        self.flow_encoder = ShallowNet8x(4, cfg.sparse_enc_dim)
        self.flow_decoder = MotionDecoderSkipLayer(
            cfg.img_enc_dim + cfg.sparse_enc_dim, 2 * cfg.nbins, cfg.decoder_width,
            skip4_channels=cfg.base_width * 4, skip2_channels=cfg.base_width)

    def forward(self, image: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        image_features, skips = self.image_encoder(image)
        return self.flow_decoder(torch.cat([image_features, self.flow_encoder(sparse)], dim=1), skips)


def bin_expectation(logits: torch.Tensor, nbins: int, fmax: float) -> torch.Tensor:
    """[N, 2*nbins, h, w] logits -> [N, 2, h, w] flow: softmax per axis, mean over bin centres."""
    step = 2 * fmax / nbins
    centres = torch.arange(nbins, device=logits.device).float().view(1, -1, 1, 1) * step - fmax + step / 2
    axes = [(torch.softmax(part, dim=1) * centres).sum(dim=1, keepdim=True)
            for part in (logits[:, :nbins], logits[:, nbins:])]
    return torch.cat(axes, dim=1)


class CMP(nn.Module):
    """Dense flow from a first frame and sparse hints, as MOFA's demo runs it (float32 throughout)."""

    def __init__(self, cfg: CMPConfig = CMPConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = CMPNet(cfg)

    @torch.no_grad()
    def forward(self, image: torch.Tensor, sparse: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image [N,3,S,S] in [0,1]; sparse [N,2,S,S] pixels; mask [N,2,S,S] -> flow [N,2,S,S] float32."""
        logits = self.model(image.float() * 2 - 1, torch.cat([sparse, mask], dim=1).float())
        flow = bin_expectation(logits, self.cfg.nbins, self.cfg.fmax)
        if flow.shape[-2:] != image.shape[-2:]:
            flow = F.interpolate(flow, size=image.shape[-2:], mode="bilinear", align_corners=True)
        return flow


def config_from_state_dict(state: dict[str, torch.Tensor], nbins: int = 99, fmax: float = 50.0,
                           size: int = 384) -> CMPConfig:
    """Read widths/depths off the tensors so the published file and tiny test files build the right net."""
    def count(layer: int) -> int:
        return len({k.split(".")[2] for k in state if k.startswith(f"image_encoder.layer{layer}.")})

    return CMPConfig(
        base_width=state["image_encoder.conv1.weight"].shape[0],
        blocks=tuple(count(i) for i in range(1, 5)),
        img_enc_dim=state["image_encoder.conv5.weight"].shape[0],
        sparse_enc_dim=state["flow_encoder.features.4.weight"].shape[0],
        decoder_width=state["flow_decoder.decoder1.0.weight"].shape[0],
        nbins=nbins, fmax=fmax, size=size)


def read_cmp_state(path: Path, checkpoint: str = "mofa_traj") -> dict[str, torch.Tensor]:
    """The `state_dict` of a CMP training checkpoint with the `module.` prefix removed.

    The published file (383 tensors) predates BatchNorm's `num_batches_tracked` counters; they only
    matter for training, so each missing counter is added as 0. No other key may be missing or extra.
    """
    if not Path(path).is_file():
        raise CheckpointError(f"CMP checkpoint not found: {path}. Download the '{checkpoint}' checkpoint again.")
    stored = load_pickle_safely(path, checkpoint)
    state = stored.get("state_dict") if isinstance(stored, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} has no 'state_dict'; it is not the published CMP checkpoint.")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for key in [k for k in state if k.endswith(".running_var")]:
        state.setdefault(key.replace(".running_var", ".num_batches_tracked"), torch.tensor(0))
    return state


def load_cmp(path: Path, nbins: int = 99, fmax: float = 50.0, size: int = 384,
             device: torch.device | str = "cpu", checkpoint: str = "mofa_traj") -> CMP:
    """Build CMP from the checkpoint's shapes and load it strictly (the original silently used random weights)."""
    state = read_cmp_state(path, checkpoint)
    try:
        cmp = CMP(config_from_state_dict(state, nbins, fmax, size))
        cmp.model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"CMP checkpoint {path} does not match the architecture: {exc}") from exc
    return cmp.to(device).eval().requires_grad_(False)


def read_cmp_settings(config_file: Path) -> dict[str, Any]:
    """nbins/fmax/input size from the CMP experiment config; the published values when it is absent.

    99 / 50 / 384: model.module.nbins, fmax and data.crop_size of MOFA-Video-Traj/models/cmp/experiments/
    semiauto_annot/resnet50_vip+mpii_liteflow/config.yaml@3ad3b546da4c."""
    if not config_file.is_file():
        return {"nbins": 99, "fmax": 50.0, "size": 384}
    config = yaml.safe_load(config_file.read_text())
    module = config["model"]["module"]
    return {"nbins": int(module["nbins"]), "fmax": float(module["fmax"]), "size": int(config["data"]["crop_size"][0])}


def load_repo_cmp(repo: Path, device: Any, checkpoint: str, networks: ModelCache | None = None) -> CMP:
    """The CMP a MOFA repo snapshot holds at CMP_CHECKPOINT (settings from CMP_CONFIG when present), float32,
    through the engine's network cache (one copy per file)."""
    path = Path(repo) / CMP_CHECKPOINT
    return cached_network(networks, NetworkKey.of(path, CMP, device, torch.float32), lambda: load_cmp(
        path, **read_cmp_settings(Path(repo) / CMP_CONFIG), device=device, checkpoint=checkpoint))
