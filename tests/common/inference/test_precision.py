"""The bf16 / channels_last_3d fast path: agreement with fp32, fp32 outputs, the precision switch, training."""

from __future__ import annotations

import logging

import pytest
import torch
from monai.inferers import SimpleInferer

from common.inference import precision
from common.inference.precision import PrecisionInferer, autocast_dtype, has_native_bf16, precision_label, to_fp32
from meningioma_agunet.network import AGUNet


def _tiny_agunet() -> AGUNet:
    torch.manual_seed(0)
    return AGUNet(in_channels=1, out_channels=2, filters=(4, 8, 8, 16, 16)).eval()


def test_fp32_never_autocasts_and_bf16_always_does():
    assert autocast_dtype("fp32", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    expected = torch.bfloat16 if has_native_bf16("cpu") else None
    assert autocast_dtype("auto", "cpu") is expected


@pytest.mark.parametrize("native", [False, True])
def test_forced_bf16_warns_only_where_the_cpu_would_emulate_it(native, monkeypatch, caplog):
    monkeypatch.setattr(precision, "_cpu_has_native_bf16", lambda: native)
    x = torch.rand(1, 1, 16, 16, 16)
    with caplog.at_level(logging.INFO, logger=precision.__name__), torch.no_grad():
        for value in ("bf16", "auto", "fp32"):
            PrecisionInferer(precision=value)(x, _tiny_agunet())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if native:
        assert warnings == []
    else:  # only the forced bf16, not auto (fp32 here) or fp32
        assert len(warnings) == 1
        assert warnings[0].startswith("precision=bf16 on cpu: no native bf16 there, so bf16 is emulated")
    assert f"in {'bf16 autocast' if native else 'fp32'}, channels_last_3d (precision=auto)" in caplog.text


def test_unknown_precision_names_the_key():
    with pytest.raises(ValueError, match="--precision must be one of auto, bf16, fp32"):
        PrecisionInferer(precision="fp16")


def test_bf16_mask_agrees_with_fp32_and_outputs_are_fp32_contiguous():
    network = _tiny_agunet()
    x = torch.rand(1, 1, 32, 32, 48)
    with torch.no_grad():
        reference = PrecisionInferer(SimpleInferer(), precision="fp32", channels_last=False)(x, network)
        fast = PrecisionInferer(SimpleInferer(), precision="bf16", channels_last=True)(x, network)
    assert fast.dtype == torch.float32 and fast.is_contiguous()
    # every 5D weight converted, also the first one whose single input channel makes both layouts look contiguous
    assert all(p.stride(1) == 1 for p in network.parameters() if p.ndim == 5)
    reference_mask, fast_mask = reference.argmax(1), fast.argmax(1)
    agreement = (reference_mask == fast_mask).float().mean().item()
    assert agreement >= 0.99
    assert torch.allclose(torch.softmax(fast, 1), torch.softmax(reference, 1), atol=0.05)


def test_training_step_through_the_fast_path_updates_every_weight():
    network = _tiny_agunet().train()
    before = [p.detach().clone() for p in network.parameters()]
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    x, y = torch.rand(2, 1, 32, 32, 32), (torch.rand(2, 1, 32, 32, 32) > 0.9).float()
    outputs = PrecisionInferer(precision="bf16")(x, network)  # deep supervision: a list of fp32 levels
    assert all(o.dtype == torch.float32 for o in outputs)
    loss = sum(
        torch.nn.functional.cross_entropy(o, y[:, 0].long()[:, :: 2**i, :: 2**i, :: 2**i])
        for i, o in enumerate(outputs)
    )
    loss.backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, network.parameters()) if p.requires_grad)


def test_to_fp32_keeps_structure_and_integer_tensors():
    value = {"a": [torch.ones(2, dtype=torch.bfloat16)], "b": torch.ones(2, dtype=torch.int64)}
    converted = to_fp32(value)
    assert converted["a"][0].dtype == torch.float32 and converted["b"].dtype == torch.int64


def test_precision_label():
    assert precision_label(SimpleInferer(), "cpu") == "fp32"
    assert precision_label(PrecisionInferer(precision="bf16"), "cpu") == "bf16"
