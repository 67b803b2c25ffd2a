import torch

from engine.models.mofa.svd_unet import MofaSVDUNet
from engine.pipelines.motion.tiny import TINY_UNET
from engine.testing.weights import randomise
from tests.tolerance import assert_relative_close

MULTIPLICITY = [4, 4, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1]


def _inputs(unet: MofaSVDUNet):
    gen = torch.Generator().manual_seed(1)
    sample = torch.randn(1, 2, 8, 16, 16, generator=gen)
    context = torch.randn(1, 1, 32, generator=gen)
    time_ids = torch.tensor([[6.0, 128.0, 0.02]])
    return sample, torch.tensor(3.0), context, time_ids


def _capture(unet: MofaSVDUNet, residuals, mid):
    seen = {}

    def grab(index):
        def hook(module, args, kwargs):
            seen[index] = (kwargs["hidden_states"], kwargs["res_hidden_states_tuple"])
        return hook

    handles = [block.register_forward_pre_hook(grab(i), with_kwargs=True) for i, block in enumerate(unet.up_blocks)]
    with torch.no_grad():
        unet(*_inputs(unet), down_residuals=residuals, mid_residual=mid)
    for handle in handles:
        handle.remove()
    # skips are consumed from the end: up block 0 takes the last three, etc.
    skips = [s for i in reversed(range(len(unet.up_blocks))) for s in seen[i][1]]
    return seen[0][0], skips


def test_each_skip_receives_its_residual_as_often_as_the_original_adds_it():
    unet = randomise(MofaSVDUNet(**TINY_UNET), torch.Generator().manual_seed(0)).eval()
    _, base_skips = _capture(unet, None, None)
    shapes = [s.shape for s in base_skips]
    assert len(shapes) == 12
    # residual i is the constant i+1, so skip j must move by exactly multiplicity[j] * (j+1)
    base_mid, _ = _capture(unet, [torch.zeros(s) for s in shapes], torch.zeros(1))
    residuals = [torch.full(s, float(i + 1)) for i, s in enumerate(shapes)]
    mid_in, skips = _capture(unet, residuals, torch.full((1,), 0.5))
    for j, (got, ref) in enumerate(zip(skips, base_skips)):
        assert_relative_close(got, ref + MULTIPLICITY[j] * (j + 1))
    assert_relative_close(mid_in, base_mid + 0.5)


def test_without_residuals_matches_diffusers_forward():
    unet = randomise(MofaSVDUNet(**TINY_UNET), torch.Generator().manual_seed(0)).eval()
    sample, t, context, time_ids = _inputs(unet)
    with torch.no_grad():
        ours = unet(sample, t, context, time_ids)
        reference = super(MofaSVDUNet, unet).forward(sample, t, context, time_ids, return_dict=False)[0]
    assert_relative_close(ours, reference)
