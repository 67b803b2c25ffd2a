"""OpenCLIP's vision tower (open_clip VisionTransformer names: conv1, class_embedding, positional_embedding, ln_pre,
transformer.resblocks.N.{ln_1, attn.in_proj_weight/bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_post, proj)
and sgm's FrozenOpenCLIPImageEmbedder preprocessing (sgm/modules/encoders/modules.py@0ad7de9a5cb5): images in
[-1, 1] -> bicubic resize to the tower's size (align_corners True, antialiased, as kornia) -> [0, 1] -> CLIP
mean/std -> the class token's projection. GELU is exact (open_clip's ViT-H-14 does not use QuickGELU)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing
from torch import nn

from .attention import attention
from .config import ClipConfig

# OPENAI_DATASET_MEAN/STD: the buffers of FrozenOpenCLIPImageEmbedder, sgm/modules/encoders/modules.py@0ad7de9a5cb5
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MultiheadAttention(nn.Module):
    """nn.MultiheadAttention's parameters (in_proj_weight/bias, out_proj), self-attention only, on torch SDPA."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        return self.out_proj(attention(q, k, v, self.heads))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp_width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(mlp_width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, mlp_width) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, config: ClipConfig) -> None:
        super().__init__()
        width, grid = config.width, config.image_size // config.patch_size
        self.config = config
        self.conv1 = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, config.layers, width // config.head_width,
                                       int(width * config.mlp_ratio))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, config.embed_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [N, 3, S, S] -> pooled embeddings [N, embed_dim]."""
        x = self.conv1(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class OpenCLIPImageEmbedder(nn.Module):
    """`visual` holds the tower (checkpoint prefix conditioner.embedders.0.open_clip.model.visual)."""

    def __init__(self, config: ClipConfig) -> None:
        super().__init__()
        self.visual = VisionTransformer(config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], [N, 3, H, W] -> [N, embed_dim]."""
        size = self.visual.config.image_size
        x = _resize_with_antialiasing(images.float(), (size, size))
        x = (x + 1.0) / 2.0
        mean = torch.tensor(CLIP_MEAN, device=x.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=x.device)[:, None, None]
        dtype = self.visual.conv1.weight.dtype
        return self.visual(((x - mean) / std).to(dtype))
