"""The single SV4D 2.0 `.safetensors` file: every part under its sgm prefix, read lazily by prefix (safe_open), each
part loaded strictly; keys the app does not use are listed explicitly and anything else is an error."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open

from engine.errors import CheckpointError
from engine.weights import describe_keys

UNET = "model.diffusion_model."
CLIP = "conditioner.embedders.0.open_clip.model."
CLIP_VISUAL = CLIP + "visual."
FRAMES_ENCODER = "conditioner.embedders.1.encoder."  # cond_frames
VIEW_ENCODER = "conditioner.embedders.4.encoder."  # cond_view
MOTION_ENCODER = "conditioner.embedders.5.encoder."  # cond_motion: encoded by the original, unused by the network
DECODER = "first_stage_model.decoder."
ENCODING_PARTS = ("encoder.", "quant_conv.")  # of an AutoencoderKLModeOnly: what encoding uses

# Expected unused keys, by pattern: the OpenCLIP text tower (sgm deletes only its `transformer`; the rest is saved),
# the decoding halves of the three conditioning autoencoders, and the whole cond_motion autoencoder.
EXPECTED_UNUSED = (
    re.compile(re.escape(CLIP) + r"(positional_embedding|text_projection|logit_scale|token_embedding\.weight|"
               r"ln_final\.(weight|bias)|attn_mask|transformer\..*)$"),
    re.compile(r"conditioner\.embedders\.[14]\.encoder\.(decoder|post_quant_conv)\..*$"),
    re.compile(re.escape(MOTION_ENCODER) + ".*$"),
)
# SV3D (u and p): the text tower, and the decoding half of the one conditioning autoencoder (cond_frames).
SV3D_UNUSED = (
    EXPECTED_UNUSED[0],
    re.compile(r"conditioner\.embedders\.1\.encoder\.(decoder|post_quant_conv)\..*$"),
)


class SV4DCheckpoint:
    """Key index of the file; tensors are read only when a part is loaded."""

    def __init__(self, path: Path, unused: tuple[re.Pattern[str], ...] = EXPECTED_UNUSED,
                 kind: str = "SV4D 2.0") -> None:
        self.path, self.unused, self.kind = Path(path), unused, kind
        if not self.path.is_file():
            raise CheckpointError(f"{self.path} is missing; download the checkpoint again.")
        try:
            with safe_open(str(self.path), "pt") as handle:
                self.keys = set(handle.keys())
        except Exception as exc:  # truncated or foreign file
            raise CheckpointError(f"Could not read {self.path}: {exc}. Delete it and download it again.") from exc

    def check_layout(self, used_prefixes: Iterable[str]) -> None:
        """Every key belongs to a part the app loads or to the explicitly unused ones."""
        used = tuple(used_prefixes)
        stray = [k for k in self.keys if not k.startswith(used) and not any(p.match(k) for p in self.unused)]
        if stray:
            raise CheckpointError(f"{self.path.name} does not look like an {self.kind} checkpoint: "
                                  f"{describe_keys('unexpected', stray)}. Download it again.")

    def part(self, prefix: str, only: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
        """Tensors under `prefix` with it stripped (and, with `only`, only names starting with one of those)."""
        names = sorted(k for k in self.keys if k.startswith(prefix) and k[len(prefix):].startswith(only or ("",)))
        if not names:
            raise CheckpointError(f"{self.path.name} has no tensors under '{prefix}'; it is not an {self.kind} "
                                  "checkpoint or is incomplete. Download it again.")
        with safe_open(str(self.path), "pt") as handle:
            return {name[len(prefix):]: handle.get_tensor(name) for name in names}

    def same_tensors(self, prefix_a: str, prefix_b: str, only: tuple[str, ...]) -> bool:
        """Whether two parts hold identical tensors (read one pair at a time)."""
        names_a = {k[len(prefix_a):] for k in self.keys if k.startswith(prefix_a) and k[len(prefix_a):].startswith(only)}
        names_b = {k[len(prefix_b):] for k in self.keys if k.startswith(prefix_b) and k[len(prefix_b):].startswith(only)}
        if names_a != names_b:
            return False
        with safe_open(str(self.path), "pt") as handle:
            return all(torch.equal(handle.get_tensor(prefix_a + n), handle.get_tensor(prefix_b + n)) for n in names_a)
