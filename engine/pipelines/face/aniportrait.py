"""AniPortrait's audio -> face-mesh networks as MOFA-Video-Hybrid runs them (aniportrait/src/audio_models/model.py,
pose_model.py, wav2vec2.py and audio2ldmk.py@3ad3b546da4c), with the published checkpoints' parameter names.

- Audio features: wav2vec2 (transformers' Wav2Vec2Model) whose convolutional features are linearly interpolated
  (align_corners) to one vector per 25 fps frame before the feature projection and the transformer encoder.
- Audio2Mesh: Linear(hidden -> 512) -> Linear(512 -> 1404): per-frame offsets of the 468 x 3 metric face mesh.
- Audio2Pose: an 8-layer TransformerDecoder (d 512, 8 heads, feed-forward 1024, post-norm) decoding the head pose
  (3 Euler angles in degrees, 3 translations) frame by frame from a zero pose, with an ALiBi causal self-attention
  bias, sinusoidal positions, an identity embedding (id 42 of 100) and cross-attention restricted to the same frame's
  audio feature. The original re-runs the whole decoder on the growing sequence each frame; the causal mask makes
  every earlier output unchanged, so this port decodes incrementally (cached keys and values) with the same result.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from engine.errors import CheckpointError

FPS = 25  # audio2ldmk.py's --fps default: one mesh per 1/25 s
SAMPLE_RATE = 16000  # its --sr default
CHUNK_SECONDS = 5  # audio2ldmk.py: Audio2Pose runs on 5 s pieces of the audio
POSE_ID = 42  # audio2ldmk.py: id_seed = 42
POSE_HEADS, POSE_LAYERS, POSE_IDS = 8, 8, 100  # pose_model.py
MAX_POSITIONS = 600  # pose_model.py: PositionalEncoding(max_len=600), init_biased_mask(max_seq_len=600)
MESH_FILE, POSE_FILE, WAV2VEC_DIR = "ckpts/aniportrait/audio2mesh.pt", "ckpts/aniportrait/audio2pose.pt", \
    "ckpts/aniportrait/wav2vec2-base-960h"
ENCODER = "audio_encoder."


# ---------------------------------------------------------------------------------------------------- audio features

def audio_features(encoder: Wav2Vec2Model, values: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, samples] normalised 16 kHz audio -> [B, frames, hidden] (the last encoder layer), wav2vec2 with its
    convolutional features interpolated to `frames` (wav2vec2.py's forward, eval mode)."""
    features = encoder.feature_extractor(values).transpose(1, 2)
    features = F.interpolate(features.transpose(1, 2), size=frames, mode="linear", align_corners=True).transpose(1, 2)
    hidden, _ = encoder.feature_projection(features)
    return encoder.encoder(hidden).last_hidden_state


class Audio2MeshModel(nn.Module):
    """Audio -> [B, frames, 1404] mesh offsets."""

    def __init__(self, audio_encoder: Wav2Vec2Model, latent_dim: int = 512, out_dim: int = 1404) -> None:
        super().__init__()
        self.audio_encoder = audio_encoder
        self.in_fn = nn.Linear(audio_encoder.config.hidden_size, latent_dim)
        self.out_fn = nn.Linear(latent_dim, out_dim)

    def forward(self, values: torch.Tensor, frames: int) -> torch.Tensor:
        return self.out_fn(self.in_fn(audio_features(self.audio_encoder, values, frames)))


class PositionalEncoding(nn.Module):
    """Sinusoidal positions added to the decoder input (the buffer `pe` is saved in the checkpoint)."""

    def __init__(self, d_model: int, max_len: int = MAX_POSITIONS) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1).float()
        rate = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(position * rate), torch.cos(position * rate)
        self.register_buffer("pe", pe.unsqueeze(0))


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi head slopes (Press et al.): a geometric sequence from 2^(-8/n); for a head count that is not a power of
    two, those of the next lower power of two and every other one of the double (init_biased_mask's get_slopes)."""
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** k for k in range(n)]

    if math.log2(heads).is_integer():
        return power_of_two(heads)
    lower = 2 ** math.floor(math.log2(heads))
    return power_of_two(lower) + alibi_slopes(2 * lower)[0::2][:heads - lower]


def alibi_mask(heads: int, length: int) -> torch.Tensor:
    """[heads, length, length] additive self-attention bias: -slope_h * (i - j) for j <= i, -inf above the diagonal
    (init_biased_mask with period 1)."""
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    distance = (j - i).float().clamp(max=0)
    bias = torch.tensor(alibi_slopes(heads))[:, None, None] * distance
    return bias.masked_fill((j > i)[None], float("-inf"))


class Audio2PoseModel(nn.Module):
    """Audio -> [frames, 6] head pose (Euler x, y, z in degrees, translation x, y, z)."""

    def __init__(self, audio_encoder: Wav2Vec2Model, latent_dim: int = 512, out_dim: int = 6) -> None:
        super().__init__()
        self.audio_encoder = audio_encoder
        self.pose_map = nn.Linear(out_dim, latent_dim)
        self.in_fn = nn.Linear(audio_encoder.config.hidden_size, latent_dim)
        self.PPE = PositionalEncoding(latent_dim)
        layer = nn.TransformerDecoderLayer(d_model=latent_dim, nhead=POSE_HEADS, dim_feedforward=2 * latent_dim,
                                           batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, num_layers=POSE_LAYERS)
        self.pose_map_r = nn.Linear(latent_dim, out_dim)
        self.id_embed = nn.Embedding(POSE_IDS, latent_dim)

    def memory(self, values: torch.Tensor, frames: int) -> torch.Tensor:
        """[1, samples] -> [frames, latent]: the audio features the decoder attends to."""
        return self.in_fn(audio_features(self.audio_encoder, values, frames))[0]

    def decode(self, memory: torch.Tensor, identity: int = POSE_ID,
               cancel: Callable[[], None] = lambda: None) -> torch.Tensor:
        """[frames, latent] audio memory -> [frames, 6] poses, one frame at a time (cached keys and values)."""
        frames = len(memory)
        if frames > MAX_POSITIONS:
            raise ValueError(f"Audio2Pose decodes at most {MAX_POSITIONS} frames per chunk, got {frames}")
        mask = alibi_mask(POSE_HEADS, frames).to(memory)
        offset = self.PPE.pe[0, :frames] + self.id_embed.weight[identity]
        layers = list(self.transformer_decoder.layers)
        caches = [memory.new_empty(2, frames, memory.shape[1]) for _ in layers]  # keys, values per layer
        cross = [_cross_values(layer, memory) for layer in layers]
        pose_in = self.pose_map.bias  # pose_map(zero pose)
        poses = memory.new_empty(frames, self.pose_map_r.out_features)
        with _one_cpu_thread(memory.device):
            for t in range(frames):
                if t % 25 == 0:
                    cancel()
                x = pose_in + offset[t]
                for layer, cache, crossed in zip(layers, caches, cross):
                    x = _decoder_step(layer, x, cache, t, mask[:, t, :t + 1], crossed[t])
                poses[t] = self.pose_map_r(x)
                pose_in = self.pose_map(poses[t])
        return poses


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread on the CPU for the frame-by-frame loop: each of its operations is a single 512-vector
    product, and handing such work between threads costs more than it saves (a 53-frame decode took 0.5 s on one
    thread, 5 s on two, on a busy 2-core machine)."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _cross_values(layer: nn.TransformerDecoderLayer, memory: torch.Tensor) -> torch.Tensor:
    """The cross-attention output for every frame. MOFA's memory mask (enc_dec_mask) lets frame t see only audio
    frame t, so the attention weights are exactly 1 there: the output is out_proj(v_proj(memory[t]))."""
    attention = layer.multihead_attn
    d = attention.embed_dim
    value = F.linear(memory, attention.in_proj_weight[2 * d:], attention.in_proj_bias[2 * d:])
    return attention.out_proj(value)


def _decoder_step(layer: nn.TransformerDecoderLayer, x: torch.Tensor, cache: torch.Tensor, t: int,
                  bias: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
    """Position t through a post-norm nn.TransformerDecoderLayer (ReLU, eval mode), its key and value written to the
    layer's cache [2, frames, d]. bias: [heads, t + 1] the ALiBi row of this position."""
    attention = layer.self_attn
    heads, d = attention.num_heads, attention.embed_dim
    q, cache[0, t], cache[1, t] = F.linear(x, attention.in_proj_weight, attention.in_proj_bias).split(d)
    keys = cache[0, :t + 1].view(t + 1, heads, -1)
    values = cache[1, :t + 1].view(t + 1, heads, -1)
    scores = torch.einsum("hc,thc->ht", q.view(heads, -1) * (keys.shape[-1] ** -0.5), keys) + bias
    out = torch.einsum("ht,thc->hc", scores.softmax(-1), values).reshape(d)
    x = layer.norm1(x + attention.out_proj(out))
    x = layer.norm2(x + cross)
    return layer.norm3(x + layer.linear2(F.relu(layer.linear1(x))))


# ---------------------------------------------------------------------------------------------------- chunks

@dataclass(frozen=True)
class Chunk:
    """A piece of audio Audio2Pose decodes on its own: samples [start, stop) and its frame count."""

    start: int
    stop: int
    frames: int


def pose_chunks(samples: int, frames: int, rate: int = SAMPLE_RATE, fps: int = FPS,
                seconds: int = CHUNK_SECONDS) -> list[Chunk]:
    """audio2ldmk.py's split: 5 s pieces (125 frames each), the last piece merged into the one before it (so the last
    holds 5 to 10 s). Audio of at most 5 s is one chunk (the original indexes a second chunk there and crashes,
    MOFA-Video issue #40), and the last chunk's frames always complete `frames` (the original's `frames % 125` drops
    125 frames when a last piece rounds up to exactly 125)."""
    size, per_chunk = rate * seconds, fps * seconds
    pieces = math.ceil(samples / size)
    if pieces <= 1:
        return [Chunk(0, samples, frames)]
    chunks = [Chunk(k * size, (k + 1) * size, per_chunk) for k in range(pieces - 2)]
    last_start = (pieces - 2) * size
    return chunks + [Chunk(last_start, samples, frames - per_chunk * (pieces - 2))]


# ---------------------------------------------------------------------------------------------------- loading

def load_encoder_config(folder: Path) -> Wav2Vec2Config:
    try:
        return Wav2Vec2Config.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"The wav2vec2 folder '{folder.name}' has no readable config.json ({exc}); download "
                              "the checkpoint 'aniportrait' again.") from None


def load_audio_model(cls: type[nn.Module], file: Path, wav2vec: Path) -> nn.Module:
    """Audio2MeshModel or Audio2PoseModel from its published state dict (torch.load, weights_only), strictly.

    The published files hold the whole model (AniPortrait fine-tuned wav2vec2's encoder with the heads: only the
    convolutional feature extractor was frozen), so their `audio_encoder.*` weights replace the wav2vec2 folder's;
    a file without any `audio_encoder.*` key runs on the folder's wav2vec2 weights (the only keys allowed missing).
    Weight-norm parameters saved by torch < 2.1 (`weight_g`, `weight_v`) are renamed to the parametrisation names."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"Could not read '{file.name}' ({exc}); download the checkpoint 'aniportrait' again.") \
            from None
    state = {_modern_weight_norm(key): value for key, value in state.items()}
    config = load_encoder_config(wav2vec)
    has_encoder = any(key.startswith(ENCODER) for key in state)
    encoder = Wav2Vec2Model(config) if has_encoder else Wav2Vec2Model.from_pretrained(wav2vec, local_files_only=True)
    if "in_fn.weight" not in state:
        raise CheckpointError(f"'{file.name}' is not an AniPortrait audio model (no in_fn.weight).")
    latent, out = state["in_fn.weight"].shape[0], state["pose_map_r.weight" if cls is Audio2PoseModel
                                                         else "out_fn.weight"].shape[0]
    model = cls(encoder, latent_dim=latent, out_dim=out)
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if has_encoder or not key.startswith(ENCODER)]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"'{file.name}' does not match {cls.__name__}: missing {missing[:5]}, unexpected "
                              f"{result.unexpected_keys[:5]}.")
    return model.eval()


def _modern_weight_norm(key: str) -> str:
    if key.endswith(".weight_g"):
        return key[:-len("weight_g")] + "parametrizations.weight.original0"
    if key.endswith(".weight_v"):
        return key[:-len("weight_v")] + "parametrizations.weight.original1"
    return key
