"""Tests for vestibular_spvpa.network (2.5D SpvPA U-Net and the Table 1 variants, Wang et al. 2019)."""

import pytest
import torch
from monai.networks.utils import convert_to_torchscript
from torch import nn

from common.attention import AttentionGate, SpatialAttention
from common.parameters import count_parameters
from vestibular_spvpa.network import VARIANTS, SpvPAUNet

TABLE_1 = ["2D U-Net", "3D U-Net", "2.5D U-Net", "2.5D U-Net + AG", "2.5D U-Net + PA", "2.5D U-Net + SpvPA"]

# (trainable, with BN running mean and variance), default configuration (N_l = 16 l, 5 levels, 1 -> 2 channels)
EXPECTED_PARAMETERS = {
    "2D U-Net": (469_956, 471_556),
    "3D U-Net": (1_363_684, 1_365_284),
    "2.5D U-Net": (1_253_828, 1_255_428),
    "2.5D U-Net + AG": (1_262_080, 1_264_008),
    "2.5D U-Net + PA": (1_264_953, 1_266_553),
    "2.5D U-Net + SpvPA": (1_264_953, 1_266_553),
}

# input grids of the small tests: (H, W, D), D the slice axis
SMALL_INPUT = {"2d": (32, 32, 8), "2.5d": (32, 32, 8), "3d": (32, 32, 32)}
# attention-map grids, finest first, for 2.5D on 32 x 32 x 8 (two 2x2x1 then two 2x2x2 poolings)
GRIDS_25D = [(32, 32, 8), (16, 16, 8), (8, 8, 8), (4, 4, 4), (2, 2, 2)]


def _small(name: str, **kwargs) -> SpvPAUNet:
    torch.manual_seed(0)
    return SpvPAUNet(base_channels=2, **{**VARIANTS[name], **kwargs})


def _input(name: str, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 1, *SMALL_INPUT[VARIANTS[name]["dims"]])


def _kernel(conv_block: nn.Module) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(conv_block.conv1.conv.weight.shape[2:]), tuple(conv_block.conv2.conv.weight.shape[2:])


def test_variants_are_table_1_rows():
    assert list(VARIANTS) == TABLE_1 == list(EXPECTED_PARAMETERS)


@pytest.mark.parametrize("name", TABLE_1)
def test_full_size_parameter_counts(name):
    with torch.device("meta"):
        model = SpvPAUNet(**VARIANTS[name])
    assert (count_parameters(model, False), count_parameters(model, True)) == EXPECTED_PARAMETERS[name]


@pytest.mark.parametrize("name", ["2D U-Net", "3D U-Net", "2.5D U-Net"])
def test_parameter_count_matches_closed_form(name):
    """Plain U-Nets: count from the architecture description, independent of the module tree."""
    dims = VARIANTS[name]["dims"]
    flat = [dims == "2d" or (dims == "2.5d" and level < 2) for level in range(5)]
    kernel = [9 if f else 27 for f in flat]
    pool = [4 if f else 8 for f in flat]
    channels = [16 * (level + 1) for level in range(5)]

    def block(cin: int, cout: int, k: int) -> int:  # 2 x (conv + bias, BN weight + bias, one PReLU slope)
        return (cin * cout * k + cout + 2 * cout + 1) + (cout * cout * k + cout + 2 * cout + 1)

    total = block(1, channels[0], kernel[0])
    total += sum(block(channels[i - 1], channels[i], kernel[i]) for i in range(1, 5))
    for i in range(4):  # decoder: transposed conv (kernel = stride = pooling), block on 2 N_l channels
        total += channels[i + 1] * channels[i] * pool[i] + channels[i] + block(2 * channels[i], channels[i], kernel[i])
    total += channels[0] * 2 + 2  # head
    assert count_parameters(SpvPAUNet(**VARIANTS[name]), include_bn_statistics=False) == total


def test_pa_and_spvpa_are_the_same_network():
    pa, spvpa = _small("2.5D U-Net + PA"), _small("2.5D U-Net + SpvPA")
    assert {k: v.shape for k, v in pa.state_dict().items()} == {k: v.shape for k, v in spvpa.state_dict().items()}
    spvpa.load_state_dict(pa.state_dict())
    x = _input("2.5D U-Net + PA")
    with torch.no_grad():
        torch.testing.assert_close(pa.eval()(x), spvpa.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", TABLE_1)
def test_eval_and_train_outputs(name):
    model = _small(name)
    x = _input(name)
    with torch.no_grad():
        logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, 2, *x.shape[2:])
    output = model.train()(x)
    if VARIANTS[name]["attention"] in ("pa", "spvpa"):
        logits, maps = output
        assert [tuple(a.shape) for a in maps] == [(1, 1, *grid) for grid in GRIDS_25D]
        assert all(bool(((a > 0) & (a < 1)).all()) for a in maps)
        loss = logits.mean() + sum(a.mean() for a in maps)
    else:
        assert isinstance(output, torch.Tensor)
        logits, loss = output, output.mean()
    assert logits.shape == (1, 2, *x.shape[2:])
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_attention_maps_grids_2d_and_3d():
    for dims, grids in (
        ("2d", [(32, 32, 8), (16, 16, 8), (8, 8, 8), (4, 4, 8), (2, 2, 8)]),
        ("3d", [(32, 32, 32), (16, 16, 16), (8, 8, 8), (4, 4, 4), (2, 2, 2)]),
    ):
        model = SpvPAUNet(base_channels=2, dims=dims, attention="spvpa").train()
        _, maps = model(torch.randn(1, 1, *grids[0]))
        assert [tuple(a.shape[2:]) for a in maps] == grids


def test_25d_levels_use_in_plane_kernels():
    model = _small("2.5D U-Net + SpvPA", attention_kernel_size=3)
    encoder, decoder = model.encoder, model.decoder  # decoder: coarsest level first
    for level in (0, 1):  # L1-L2: 3x3x1 convolutions, 2x2x1 pooling and upsampling
        assert _kernel(encoder[level].conv) == ((3, 3, 1), (3, 3, 1))
        assert _kernel(decoder[-1 - level].conv) == ((3, 3, 1), (3, 3, 1))
        assert tuple(encoder[level].pool.kernel_size) == (2, 2, 1)
        assert tuple(decoder[-1 - level].up.weight.shape[2:]) == (2, 2, 1)
        assert tuple(decoder[-1 - level].attention.reduce.conv.weight.shape[2:]) == (3, 3, 1)
    for level in (2, 3):  # L3-L4: 3x3x3 convolutions, 2x2x2 pooling and upsampling
        assert _kernel(encoder[level].conv) == ((3, 3, 3), (3, 3, 3))
        assert _kernel(decoder[-1 - level].conv) == ((3, 3, 3), (3, 3, 3))
        assert tuple(encoder[level].pool.kernel_size) == (2, 2, 2)
        assert tuple(decoder[-1 - level].up.weight.shape[2:]) == (2, 2, 2)
        assert tuple(decoder[-1 - level].attention.reduce.conv.weight.shape[2:]) == (3, 3, 3)
    assert _kernel(model.bottleneck) == ((3, 3, 3), (3, 3, 3))  # L5
    assert tuple(model.bottleneck_attention.project.conv.weight.shape[2:]) == (3, 3, 3)
    # channels N_l = 2 l, attention reduces 2 N_l (N_L at the bottleneck) to N_l // 2
    assert [level.conv.conv2.conv.out_channels for level in encoder] == [2, 4, 6, 8]
    assert model.bottleneck.conv2.conv.out_channels == 10
    assert [level.attention.reduce.conv.in_channels for level in decoder] == [16, 12, 8, 4]
    assert [level.attention.reduce.conv.out_channels for level in decoder] == [4, 3, 2, 1]
    assert model.bottleneck_attention.reduce.conv.in_channels == 10
    assert isinstance(encoder[0].conv.conv1.adn.A, nn.PReLU) and isinstance(encoder[0].conv.conv1.adn.N, nn.BatchNorm3d)


@pytest.mark.parametrize("dims, kernel", [("2d", (3, 3, 1)), ("3d", (3, 3, 3))])
def test_2d_and_3d_kernels_at_every_level(dims, kernel):
    model = SpvPAUNet(base_channels=2, dims=dims, attention="none")
    blocks = [level.conv for level in model.encoder] + [model.bottleneck] + [level.conv for level in model.decoder]
    assert all(_kernel(block) == (kernel, kernel) for block in blocks)
    assert model.divisors == ([16, 16, 1] if dims == "2d" else [16, 16, 16])


@pytest.mark.parametrize("num_2d_levels, slice_divisor", [(0, 16), (1, 8), (2, 4), (3, 2), (4, 1)])
def test_num_2d_levels(num_2d_levels, slice_divisor):
    model = SpvPAUNet(base_channels=2, attention="none", num_2d_levels=num_2d_levels)
    assert model.divisors == [16, 16, slice_divisor]
    kernels = [_kernel(level.conv)[0] for level in model.encoder] + [_kernel(model.bottleneck)[0]]
    assert kernels == [(3, 3, 1)] * num_2d_levels + [(3, 3, 3)] * (5 - num_2d_levels)
    if num_2d_levels == 0:
        assert count_parameters(model) == count_parameters(SpvPAUNet(base_channels=2, dims="3d", attention="none"))


def test_gate_variant_uses_oktay_sum_gates():
    model = _small("2.5D U-Net + AG")
    assert model.bottleneck_attention is None
    for level, channels in zip(model.decoder, (8, 6, 4, 2)):
        assert isinstance(level.gate, AttentionGate) and level.attention is None
        assert not level.gate.concat
        assert level.gate.w_gate.conv.in_channels == level.gate.w_skip.conv.in_channels == channels
        assert level.gate.w_gate.conv.out_channels == channels // 2
    assert sum(isinstance(m, SpatialAttention) for m in _small("2.5D U-Net + PA").modules()) == 5


def test_levels_and_channels_are_configurable():
    model = SpvPAUNet(in_channels=2, out_channels=3, base_channels=4, levels=3, num_2d_levels=1).train()
    assert model.divisors == [4, 4, 2]
    logits, maps = model(torch.randn(1, 2, 8, 12, 6))
    assert logits.shape == (1, 3, 8, 12, 6)
    assert [tuple(a.shape[2:]) for a in maps] == [(8, 12, 6), (4, 6, 6), (2, 3, 3)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dims": "3.5d"}, "dims"),
        ({"attention": "self"}, "attention"),
        ({"levels": 1}, "levels"),
        ({"num_2d_levels": 5}, "num_2d_levels"),
        ({"num_2d_levels": -1}, "num_2d_levels"),
        ({"in_channels": 0}, "in_channels"),
        ({"base_channels": 0}, "base_channels"),
        ({"base_channels": 1, "attention": "gate"}, "base_channels >= 2"),
        ({"attention_kernel_size": 2}, "attention_kernel_size"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpvPAUNet(**kwargs)


@pytest.mark.parametrize(
    "dims, shape, match",
    [
        ("2.5d", (32, 32, 6), "size 6 of spatial axis 2 must be a multiple of 4"),
        ("2.5d", (32, 24, 8), "size 24 of spatial axis 1 must be a multiple of 16"),
        ("3d", (32, 32, 8), "size 8 of spatial axis 2 must be a multiple of 16"),
        ("2d", (40, 32, 5), "size 40 of spatial axis 0 must be a multiple of 16"),
    ],
)
def test_input_size_not_multiple_raises(dims, shape, match):
    model = SpvPAUNet(base_channels=2, dims=dims, attention="none").eval()
    with pytest.raises(ValueError, match=match):
        model(torch.randn(1, 1, *shape))


def test_2d_accepts_any_slice_count_and_rejects_4d_input():
    model = SpvPAUNet(base_channels=2, dims="2d", attention="spvpa").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 32, 5)).shape == (1, 2, 16, 32, 5)
    with pytest.raises(ValueError, match="5D"):
        model(torch.randn(1, 1, 32, 32))


def test_torchscript_matches_eager_gate():
    model = _small("2.5D U-Net + AG").eval()
    x = _input("2.5D U-Net + AG")
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace", "ignore::torch.jit.TracerWarning")
def test_torchscript_and_trace_match_eager_spvpa():
    model = _small("2.5D U-Net + SpvPA")
    x = _input("2.5D U-Net + SpvPA")
    # evaluation mode: the MONAI export path (scripting, then comparison with the eager module), and tracing
    scripted = convert_to_torchscript(model.eval(), verify=True, inputs=[x], device=torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=1e-6)
        traced = torch.jit.trace(model, x, check_trace=False)
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=1e-6)
    # training mode (batch statistics): the scripted module returns the same (logits, maps) tuple
    with torch.no_grad():
        eager_logits, eager_maps = model.train()(x)
        script_logits, script_maps = scripted.train()(x)
    torch.testing.assert_close(script_logits, eager_logits, rtol=0, atol=1e-6)
    assert len(script_maps) == len(eager_maps) == 5
    for script_map, eager_map in zip(script_maps, eager_maps, strict=True):
        torch.testing.assert_close(script_map, eager_map, rtol=0, atol=1e-6)
