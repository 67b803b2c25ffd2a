"""SV4D 2.0 sampling pieces stated independently: windows, cameras, guidance per slot, sigmas, denoiser scalings,
the Euler update, the conditioning vector and the order of random draws."""
from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from torch import nn

from engine.errors import InputError
from engine.pipelines.fourd.conditioner import Conditioner, camera_vector
from engine.pipelines.fourd.config import built_in_config
from engine.pipelines.fourd.sampler import (GUIDANCE, camera_angles, edm_sigmas, euler_sample, guidance_scales,
                                            v_scalings, windows)
from tests.tolerance import assert_relative_close


def test_windows_cover_21_frames_as_the_original() -> None:
    assert windows("sv4d2", 21, 12) == [0, 9]  # [0..11], [9..20]
    assert windows("sv4d2_8views", 21, 5) == [0, 4, 8, 12, 16]  # overlapping by one frame
    assert windows("sv4d2", 21, 3) == [0, 3, 6, 9, 12, 15, 18]


def test_cameras_are_relative_to_the_input_view() -> None:
    polars, azimuths = camera_angles("sv4d2", 0.0, 4)
    assert np.degrees(azimuths) == pytest.approx([60, 120, 180, 240])
    assert polars == pytest.approx([math.pi / 2] * 4)
    polars, azimuths = camera_angles("sv4d2_8views", 20.0, 8)  # one elevation for all: relative polar stays 90
    assert np.degrees(azimuths) == pytest.approx([30, 75, 120, 165, 210, 255, 300, 330])
    assert polars == pytest.approx([math.pi / 2] * 8)
    with pytest.raises(InputError, match="N_VIEW"):
        camera_angles("sv4d2", 0.0, 2)


def test_guidance_scales_per_slot() -> None:
    linear = guidance_scales(GUIDANCE["sv4d2"], 12, 4)
    assert len(linear) == 48 and linear[0] == pytest.approx(1.0) and linear[-1] == pytest.approx(2.0)
    assert linear[5] == pytest.approx(1 + 5 / 47)  # slot (frame 1, view 1)
    spatio = guidance_scales(GUIDANCE["sv4d2_8views"], 5, 8).view(5, 8)
    # 1.5 + (0.5 * t / 4 + 0.5 * triangle(v / 7)) * (2.5 - 1.5), triangle(x) = 2 |x - round(x)|
    for t, v in [(0, 0), (2, 3), (4, 4), (4, 7)]:
        triangle = 2 * abs(v / 7 - math.floor(v / 7 + 0.5))
        assert spatio[t, v] == pytest.approx(1.5 + 0.5 * t / 4 + 0.5 * triangle)
    assert spatio.max() == pytest.approx(1.5 + 0.5 + 0.5 * 6 / 7)  # ~2.43, never 2.5


def test_edm_sigmas_and_v_scalings() -> None:
    sigmas = edm_sigmas(50)
    assert len(sigmas) == 51 and sigmas[-1] == 0
    assert sigmas[0] == pytest.approx(700.0, rel=1e-5) and sigmas[49] == pytest.approx(0.002, rel=1e-5)
    mid = (700 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 700 ** (1 / 7))) ** 7
    assert edm_sigmas(3)[1] == pytest.approx(mid, rel=1e-5)
    c_skip, c_out, c_in, c_noise = v_scalings(torch.tensor(1.0))
    assert (c_skip, c_out, c_in, c_noise) == pytest.approx((0.5, -1 / math.sqrt(2), 1 / math.sqrt(2), 0.0))
    assert v_scalings(torch.tensor(math.e ** 4))[3] == pytest.approx(1.0)


def test_euler_steps_reach_a_constant_prediction() -> None:
    # float64: in float32 the first step's x - D at sigma 700 keeps only ~1e-4 of a unit-sized result
    noise = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = torch.full_like(noise, 0.25)
    seen: list[float] = []

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append(float(sigma))
        return target

    out = euler_sample(denoise, noise, 4)
    assert seen == pytest.approx(edm_sigmas(4)[:4].tolist())
    assert_relative_close(out, target)
    # one step by hand: x = noise * sqrt(1 + s0^2); x' = x + (s1 - s0) (x - D) / s0
    sigmas = edm_sigmas(1)
    x = noise * torch.sqrt(1 + sigmas[0] ** 2)
    assert_relative_close(euler_sample(lambda x, s: target, noise, 1), x + (sigmas[1] - sigmas[0]) * (x - target) / sigmas[0])


def test_camera_vector_layout() -> None:
    config = built_in_config("sv4d2")
    polars, azimuths = camera_angles("sv4d2", 0.0, 4)
    vector = camera_vector(config, polars, azimuths, sigma_part=True)
    assert vector.shape == (48, 1280)
    assert vector[0, 0] == pytest.approx(math.cos(1e-5)) and vector[0, 128] == pytest.approx(math.sin(1e-5))
    polar = vector[:, 256:768]  # cos first: cos(pi/2 * 1) at frequency 1
    assert polar[:, 0] == pytest.approx(torch.zeros(48), abs=1e-6) and polar[:, 256] == pytest.approx(torch.ones(48))
    azimuth = vector[:, 768:]
    assert azimuth[1, 0] == pytest.approx(math.cos(math.radians(120)), abs=1e-6)  # slot (frame 0, view 1)
    assert torch.equal(azimuth[4:8], azimuth[:4])  # the same cameras in every frame
    uncond = camera_vector(config, polars, azimuths, sigma_part=False)
    assert torch.equal(uncond[:, :256], torch.zeros(48, 256)) and torch.equal(uncond[:, 256:], vector[:, 256:])


class Recorder(nn.Module):
    """Stands in for CLIP and the encoders: records its inputs, returns small deterministic outputs."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.out_channels, self.inputs = out_channels, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        if self.out_channels == 0:
            return x.mean(dim=(1, 2, 3))[:, None].expand(-1, 1024)
        return x[:, :1, ::8, ::8].expand(-1, self.out_channels, -1, -1)


def test_conditioning_noise_comes_first_in_the_original_order() -> None:
    config = built_in_config("sv4d2")
    clip, encoder = Recorder(0), Recorder(4)
    conditioner = Conditioner(config, clip, encoder, encoder, lambda *m: contextlib.nullcontext(), torch.device("cpu"))
    motion = torch.rand(12, 3, 16, 16) * 2 - 1
    views = torch.rand(4, 3, 16, 16) * 2 - 1
    polars, azimuths = camera_angles("sv4d2", 0.0, 4)
    generator = torch.Generator().manual_seed(23)
    cond, uncond = conditioner(motion, views, polars, azimuths, generator, encode_chunk=5)
    replay = torch.Generator().manual_seed(23)
    draws = []
    for _ in ("cond", "uncond"):
        for shape in ((48, 3, 16, 16), (4, 3, 16, 16), (12, 3, 16, 16)):
            torch.randn((1,), generator=replay)
            draws.append(torch.randn(shape, generator=replay))
    assert torch.equal(torch.randn(3, generator=generator), torch.randn(3, generator=replay))  # same position next
    frames_in = torch.cat(encoder.inputs[:10])  # 48 frames in chunks of 5, then the 4 views
    expected = motion[:, None].expand(-1, 4, -1, -1, -1).flatten(0, 1) + draws[0] * 1e-5
    assert torch.equal(frames_in, expected)
    assert torch.equal(encoder.inputs[10], views + draws[1] * 1e-5)
    assert cond.concat.shape == (48, 4, 2, 2) and cond.crossattn.shape == (1, 12, 1024)
    assert torch.equal(uncond.concat, torch.zeros_like(cond.concat)) and not uncond.crossattn.any()
    assert not uncond.cond_view.any() and cond.cond_view.any()
    first_cond, _ = conditioner(motion, None, polars, azimuths, generator, encode_chunk=48)
    assert not first_cond.cond_view.any()  # the first window's view conditioning is zero
