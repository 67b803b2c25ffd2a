"""Scaled dot-product attention shared by the SV4D networks: torch SDPA (flash / memory-efficient kernels where the
device has them) in batch chunks, so the very large batches of SV4D's per-position camera and motion attention
(up to ~10^6 short sequences at 576 px) stay inside the kernels' grid limits and bounded memory."""
from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_BATCH_HEADS = 32768  # CUDA kernels fail with grids above 65535 blocks in one dimension
MAX_SCORES = 2**28  # elements of a materialised score matrix per chunk (the math fallback), ~1 GiB in fp32


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """q [B, Lq, H*D], k/v [B, Lk, H*D] -> [B, Lq, H*D]; softmax(q k^T / sqrt(D)) v per head."""
    batch, length, inner = q.shape
    dim = inner // heads
    per_item = heads * length * k.shape[1]
    chunk = max(1, min(batch, MAX_BATCH_HEADS // heads, MAX_SCORES // max(per_item, 1)))
    out = []
    for start in range(0, batch, chunk):
        qs, ks, vs = (t[start:start + chunk] for t in (q, k, v))
        qs, ks, vs = (t.unflatten(-1, (heads, dim)).transpose(1, 2) for t in (qs, ks, vs))
        out.append(F.scaled_dot_product_attention(qs, ks, vs).transpose(1, 2).flatten(2))
    return out[0] if len(out) == 1 else torch.cat(out)
