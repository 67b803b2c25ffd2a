"""Strict, safe loading of published weights shared by every pipeline.

Networks are built on the meta device (no random init of billions of parameters) and receive the stored tensors with
`load_state_dict(strict=True, assign=True)`. Pickled checkpoints are read only through `load_pickle_safely`
(`torch.load(..., weights_only=True)`). Any mismatch is a CheckpointError naming keys.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import torch
from safetensors.torch import load_file
from torch import nn

from engine.errors import CheckpointError
from engine.runtime import ModelCache, NetworkKey, cached_network
from engine.tasks import IMPORT_LOCK

M = TypeVar("M", bound=nn.Module)
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


def describe_keys(kind: str, keys: Iterable[str]) -> str:
    """'3 missing key(s) (a, b, c)' with at most five names shown."""
    keys = sorted(keys)
    shown = ", ".join(keys[:5])
    return f"{len(keys)} {kind} key(s) ({shown}{', ...' if len(keys) > 5 else ''})"


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; download the checkpoint again.")
    return json.loads(path.read_text())


def weight_files(folder: Path, stem: str, dtype: torch.dtype) -> list[Path]:
    """The safetensors file(s) of a model folder: the fp16 variant first for half dtypes; sharded indexes too."""
    variants = ("fp16.", "") if dtype in (torch.float16, torch.bfloat16) else ("", "fp16.")
    for variant in variants:
        single = folder / f"{stem}.{variant}safetensors"
        if single.is_file():
            return [single]
        index = folder / f"{stem}.safetensors.index.{variant}json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / shard for shard in shards]
    raise CheckpointError(f"No {stem}*.safetensors in {folder}; download the checkpoint again.")


def read_state(files: Iterable[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"{file} is missing; download the checkpoint again.")
        try:
            state.update(load_file(str(file)))
        except Exception as exc:  # truncated or foreign file
            raise CheckpointError(f"Could not read {file}: {exc}. Delete it and download it again.") from exc
    return state


def load_pickle_safely(path: Path, checkpoint: str, mmap: bool = False) -> Any:
    """A pickled torch checkpoint (`torch.save`) read with `weights_only=True` onto the CPU.

    torch's refusal of a pickle that holds code or foreign objects ends with the advice to retry with
    `weights_only=False`, which this app never does; it becomes a one-line CheckpointError saying so. `mmap` maps
    zip-format files instead of copying them into RAM (legacy-format files are read without it).
    """
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if not mmap or "mmap" not in str(err):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) torch.save format
    except pickle.UnpicklingError as err:
        if _refused_as_unsafe(err):
            raise CheckpointError(f"{path} was refused: it holds code or objects other than tensors, which this app "
                                  f"never runs. Delete it and download the '{checkpoint}' checkpoint again.") from err
        raise CheckpointError(f"{path} could not be read: it is not a torch checkpoint (corrupt or truncated). "
                              f"Delete it and download the '{checkpoint}' checkpoint again.") from err
    except MemoryError:
        raise  # the machine's state, not the file's
    except Exception as err:  # truncated zip, wrong format, I/O error
        raise CheckpointError(f"{path} could not be read ({_first_line(err)}). Delete it and download "
                              f"the '{checkpoint}' checkpoint again.") from err


def _refused_as_unsafe(err: pickle.UnpicklingError) -> bool:
    """Whether torch's weights-only unpickler stopped at a global or object it does not allow (not at bad bytes)."""
    text = str(err)
    return "GLOBAL" in text or "allowlist" in text


def _first_line(err: BaseException) -> str:
    """The first sentence of an error's message (torch's go on with advice over several lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0].split(". ")[0].rstrip(".") if lines else err.__class__.__name__


def build_on_meta(factory: Callable[[], M]) -> M:
    with torch.device("meta"):
        return factory()


def assign_strict(model: M, state: Mapping[str, torch.Tensor], what: str, device: Any, dtype: torch.dtype) -> M:
    """Give a meta-built `model` exactly the tensors of `state` (no missing, no unexpected), then move it."""
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        parts = [describe_keys("missing", missing)] if missing else []
        parts += [describe_keys("unexpected", unexpected)] if unexpected else []
        raise CheckpointError(f"{what} does not match the expected network: {'; '.join(parts)}. "
                              "The file is probably from another model or incomplete; download it again.")
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"{what} has tensors of the wrong shape: {exc}") from exc
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"{what} leaves tensors uninitialised: {describe_keys('unset', left)}.")
    return frozen_on(model, device, dtype)


def frozen_on(model: M, device: Any, dtype: torch.dtype) -> M:
    """Move and cast an inference model. Calls torch's own `Module.to`: diffusers' override only adds a
    spurious "modules that should be kept in float32: []" warning on every cast (diffusers 0.42)."""
    return nn.Module.to(model, device=device, dtype=dtype).eval().requires_grad_(False)


def load_diffusers_model(cls: Any, folder: Path, device: Any, dtype: torch.dtype,
                         stem: str = "diffusion_pytorch_model", networks: ModelCache | None = None) -> Any:
    """A diffusers model from `folder/config.json` + its safetensors, built without allocating, loaded strictly
    (once per folder, class, dtype and device when the engine's network cache is given)."""
    def build() -> Any:
        config = read_json(folder / "config.json")
        model = build_on_meta(lambda: cls.from_config(config))
        return assign_strict(model, read_state(weight_files(folder, stem, dtype)), str(folder), device, dtype)

    return cached_network(networks, NetworkKey.of(folder / stem, cls, device, dtype), build)


def load_clip_vision(folder: Path, device: Any, dtype: torch.dtype, networks: ModelCache | None = None) -> nn.Module:
    """CLIPVisionModelWithProjection from a transformers folder, strictly."""
    with IMPORT_LOCK:
        from transformers import CLIPVisionModelWithProjection

    return cached_network(networks, NetworkKey.of(folder, CLIPVisionModelWithProjection, device, dtype),
                          lambda: _build_clip_vision(folder, device, dtype))


def _build_clip_vision(folder: Path, device: Any, dtype: torch.dtype) -> nn.Module:
    with IMPORT_LOCK:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig.from_dict(read_json(folder / "config.json"))
    model = CLIPVisionModelWithProjection(config)  # not on meta: it has non-persistent buffers the file lacks
    state = read_state(weight_files(folder, "model", dtype))
    # Older transformers saved this index buffer; current versions rebuild it and do not store it.
    if "vision_model.embeddings.position_ids" not in model.state_dict():
        state.pop("vision_model.embeddings.position_ids", None)
    return assign_strict(model, state, str(folder), device, dtype)
