"""Tests for meningioma_agunet.network (AGUNet family, Bouget et al. 2021)."""

import pytest
import torch
from monai.networks.utils import convert_to_torchscript

from common.parameters import count_parameters
from meningioma_agunet.network import PAPER_PARAMETERS, VARIANTS, AGUNet

SMALL = (4, 4, 8, 8, 8)

# Keras-style counts (BN running mean and variance included), in_channels=1, out_channels=2, default filters
EXPECTED_PARAMETERS = {
    "UNet-FV": 16_327_874,
    "AGUNet": 16_411_958,
    "AGUNet-MS-DS": 18_663_932,
    "DAUNet-MS-DS": 25_809_546,
    "DAGUNet-MS-DS": 31_044_090,
}


def _small(name: str, **kwargs) -> AGUNet:
    torch.manual_seed(0)
    return AGUNet(filters=SMALL, **{**VARIANTS[name], **kwargs})


def test_variants_cover_table_3():
    assert list(VARIANTS) == list(PAPER_PARAMETERS) == list(EXPECTED_PARAMETERS)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_full_size_parameter_counts(name):
    with torch.device("meta"):
        model = AGUNet(**VARIANTS[name])
    assert count_parameters(model) == EXPECTED_PARAMETERS[name]


def test_trainable_parameters_exclude_bn_statistics():
    with torch.device("meta"):
        model = AGUNet(**VARIANTS["AGUNet-MS-DS"])
    assert count_parameters(model, include_bn_statistics=False) == 18_657_716
    assert count_parameters(model, include_bn_statistics=False) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_output_shapes(name):
    model = _small(name)
    x = torch.randn(1, 1, 32, 32, 32)
    deep = VARIANTS[name]["deep_supervision"]
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (1, 2, 32, 32, 32)
        levels = model(x, all_levels=True)
    assert [tuple(o.shape[2:]) for o in levels] == [(s, s, s) for s in ((32, 16, 8, 4) if deep else (32,))]
    model.train()
    outputs = model(x)
    if deep:
        assert [tuple(o.shape) for o in outputs] == [(1, 2, s, s, s) for s in (32, 16, 8, 4)]
        sum(o.mean() for o in outputs).backward()
    else:
        assert outputs.shape == (1, 2, 32, 32, 32)


def test_anisotropic_input_and_2d():
    model = _small("DAGUNet-MS-DS", out_channels=3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 16, 48)).shape == (2, 3, 32, 16, 48)
    model_2d = AGUNet(spatial_dims=2, filters=SMALL).eval()
    with torch.no_grad():
        assert model_2d(torch.randn(1, 1, 32, 16)).shape == (1, 2, 32, 16)


def test_gate_mode_sum_has_fewer_parameters():
    concat = _small("AGUNet-MS-DS", gate_mode="concat")
    summed = _small("AGUNet-MS-DS", gate_mode="sum")
    assert count_parameters(summed) < count_parameters(concat)
    with torch.no_grad():
        assert summed.eval()(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"attention": "self"}, "attention"),
        ({"gate_mode": "product"}, "gate_mode"),
        ({"filters": (16,)}, "filters"),
        ({"filters": (16, 0, 32)}, "filters"),
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"attention": "dual", "filters": (4, 4)}, "filters\\[-1\\]"),
        ({"attention": "gate", "filters": (1, 8)}, "filters"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AGUNet(**kwargs)


def test_input_not_divisible_raises():
    model = _small("AGUNet")
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 1, 32, 24, 32))


@pytest.mark.parametrize("name", ["AGUNet-MS-DS", "DAGUNet-MS-DS"])
def test_torchscript_matches_eager(name):
    model = _small(name).eval()
    x = torch.randn(1, 1, 16, 32, 16)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=1e-6)
        for eager, script in zip(model(x, all_levels=True), scripted(x, all_levels=True), strict=True):
            torch.testing.assert_close(script, eager, rtol=0, atol=1e-6)


def test_monai_convert_to_torchscript():
    model = _small("DAUNet-MS-DS")
    convert_to_torchscript(model, verify=True, inputs=[torch.randn(1, 1, 16, 16, 16)], device=torch.device("cpu"))
