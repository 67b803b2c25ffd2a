"""The landmark ControlNet: published key layout and size, ForegroundMatting stated independently, frame 0 raw,
the pose pathway, and a strict load of the tiny published folder."""
import json

import pytest
import torch
import torch.nn.functional as F

from engine.models.mofa.landmark_controlnet import LandmarkControlNet
from engine.models.mofa.matting import ForegroundMatting
from engine.pipelines.face.pipeline import LDMK_DIR, LDMK_KEY, SVD_KEY
from engine.pipelines.face.tiny import tiny_landmark_controlnet, write_tiny_checkpoints
from engine.testing.weights import randomise
from engine.weights import load_diffusers_model
from tests.tolerance import assert_relative_close


@pytest.fixture(scope="module")
def net() -> LandmarkControlNet:
    return tiny_landmark_controlnet(torch.Generator().manual_seed(0)).eval()


def test_full_size_architecture_has_the_published_keys():
    with torch.device("meta"):
        full = LandmarkControlNet()
    state = full.state_dict()
    # measured on the published ckpts/mofa/ldmk_controlnet (reference note): 722,453,685 parameters, 765 keys
    assert len(state) == 765
    assert sum(p.numel() for p in full.parameters()) == 722_453_685
    assert not any(k.startswith("flow_encoder.zeroconvs") for k in state)  # no zero-convs in the landmark pyramid
    for key, shape in {"zero_outs.8.weight": (320, 320, 1, 1), "zero_outs.64.weight": (1280, 1280, 1, 1),
                       "occlusions.16.hourglass.encoder.down_blocks.0.conv.weight": (128, 642, 3, 3),
                       "occlusions.64.hourglass.decoder.up_blocks.2.conv.weight": (64, 256, 3, 3),
                       "occlusions.32.matting_mask.weight": (1, 64, 7, 7),
                       "occlusions.32.matting.weight": (640, 64, 7, 7),
                       "controlnet_ldmk_embedding.conv_out.weight": (320, 128, 3, 3),
                       "controlnet_cond_embedding.conv_out.weight": (320, 256, 3, 3),
                       "flow_encoder.encoders.2.conv_in.weight": (1280, 640, 3, 3)}.items():
        assert tuple(state[key].shape) == shape, key


def _hourglass_by_hand(matting: ForegroundMatting, x: torch.Tensor) -> torch.Tensor:
    """conv3x3+ReLU x3 (no resampling), then decode deepest first, concatenating [skip, decoded]."""
    def conv(layer, h):
        return F.relu(F.conv2d(h, layer.conv.weight, layer.conv.bias, padding=1))

    skips, h = [], x
    for layer in matting.hourglass.encoder.down_blocks:
        h = conv(layer, h)
        skips.append(h)
    ups = matting.hourglass.decoder.up_blocks
    h = conv(ups[0], skips[2])
    h = conv(ups[1], torch.cat([skips[1], h], 1))
    return conv(ups[2], torch.cat([skips[0], h], 1))


def test_foreground_matting_blends_warped_and_matte_by_its_mask():
    matting = randomise(ForegroundMatting(6, expansion=4, max_features=8), torch.Generator().manual_seed(1)).eval()
    gen = torch.Generator().manual_seed(2)
    ref, flow, warped = torch.randn(3, 6, 5, 7, generator=gen), torch.randn(3, 2, 5, 7, generator=gen), \
        torch.randn(3, 6, 5, 7, generator=gen)
    with torch.no_grad():
        out, mask = matting(ref, flow, warped)
        features = _hourglass_by_hand(matting, torch.cat([ref, flow, warped], 1))
        m = torch.sigmoid(F.conv2d(features, matting.matting_mask.weight, matting.matting_mask.bias, padding=3))
        matte = F.conv2d(features, matting.matting.weight, matting.matting.bias, padding=3)
    assert out.shape == warped.shape and mask.shape == (3, 1, 5, 7)
    assert_relative_close(mask, m)
    assert_relative_close(out, warped * m + matte * (1 - m))


def test_frame_zero_keeps_its_raw_feature_and_later_frames_are_refined(net):
    feature = torch.randn(2, 32, 8, 8, generator=torch.Generator().manual_seed(3))
    flow = torch.zeros(2, 3, 2, 8, 8)
    with torch.no_grad():
        out = net.refine_level(feature, flow, 8).unflatten(0, (2, 4))
        # zero flow: the splat is the feature itself; frames >= 1 = zero_out(matting(feature, 0, feature))
        matted, _ = net.occlusions["8"](feature, flow[:, 0], feature)
        expected = net.zero_outs["8"](matted)
    assert torch.equal(out[:, 0], feature)
    for t in range(1, 4):
        assert_relative_close(out[:, t], expected)


def _run(net, flow, pose, scale=1.0):
    gen = torch.Generator().manual_seed(4)
    sample = torch.randn(2, 3, 8, 8, 8, generator=gen)
    cond = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    context = torch.randn(2, 1, 32, generator=gen)
    time_ids = torch.tensor([[6.0, 128.0, 0.02]]).repeat(2, 1)
    with torch.no_grad():
        return net(sample, torch.tensor(1.5), context, time_ids, cond, flow, pose, scale)


def test_residuals_shapes_scale_and_both_conditions_matter(net):
    flow = torch.zeros(2, 2, 2, 64, 64)
    pose = torch.zeros(2, 3, 3, 64, 64)
    down, mid = _run(net, flow, pose)
    expected = [(32, 8)] * 3 + [(32, 4)] + [(64, 4)] * 2 + [(64, 2)] * 3 + [(64, 1)] * 3
    assert [(r.shape[1], r.shape[-1]) for r in down] == expected and mid.shape == (6, 64, 1, 1)
    half, half_mid = _run(net, flow, pose, 0.5)
    assert_relative_close(half[5], down[5] * 0.5)
    assert_relative_close(half_mid, mid * 0.5)
    drawn = pose.clone()
    drawn[:, :, :, 20:40, 20:40] = 1.0
    assert not torch.allclose(_run(net, flow, drawn)[0][0], down[0], rtol=1e-3)
    moving = flow.clone()
    moving[:, :, 0] = 12.0
    assert not torch.allclose(_run(net, moving, pose)[0][0], down[0], rtol=1e-3)


def test_pose_features_enter_after_conv_in_and_after_down_block_zero_only(net):
    """Spy on the encoder's additions: the pose embedding is added at full latent size and, downsampled by 2,
    after down block 0 (the only block whose output has the first block's width)."""
    recorded = []
    original = net.encode

    def spy(sample, t, context, time_ids, injections, scale):
        recorded.extend(len(stage) for stage in injections)
        return original(sample, t, context, time_ids, injections, scale)

    net.encode = spy
    try:
        _run(net, torch.zeros(2, 2, 2, 64, 64), torch.zeros(2, 3, 3, 64, 64))
    finally:
        del net.encode
    assert recorded == [2, 2, 1, 1, 1, 1]


def test_tiny_published_folder_loads_strictly(tmp_path):
    folders = {SVD_KEY: tmp_path / "svd", LDMK_KEY: tmp_path / "ldmk"}
    write_tiny_checkpoints(folders, seed=0)
    folder = folders[LDMK_KEY] / LDMK_DIR
    config = json.loads((folder / "config.json").read_text())
    assert config["_class_name"] == "FlowControlNet"  # what the original's save_pretrained recorded
    loaded = load_diffusers_model(LandmarkControlNet, folder, "cpu", torch.float32)
    assert loaded.config.matting_expansion == 8
    reference = tiny_landmark_controlnet(torch.Generator().manual_seed(1))
    assert loaded.state_dict().keys() == reference.state_dict().keys()
