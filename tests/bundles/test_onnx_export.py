"""``python -m monai.bundle onnx_export`` for both bundles, run in ONNX Runtime on a preprocessed phantom.

The exported model has a dynamic batch axis; it replaces the PyTorch network in the bundle's sliding-window inferer
(two windows per batch), and its logits must match PyTorch's within the tolerance the model cards state.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from bundle_helpers import TINY_MENINGIOMA, TINY_VESTIBULAR, bundle_dir, config_files, monai_bundle, workflow
from monai.inferers import SlidingWindowInferer

#: ONNX Runtime (CPU) against PyTorch (CPU, fp32) logits, as stated in the model cards.
ATOL, RTOL = 1e-4, 1e-4
#: names and the dynamic batch axis, passed to ``convert_to_onnx`` (the model cards give the same command)
CONVERTER_KWARGS = (
    "{'input_names': ['image'], 'output_names': ['pred'], "
    "'dynamic_axes': {'image': {0: 'batch'}, 'pred': {0: 'batch'}}}"
)
CASES = {
    "meningioma_agunet": (TINY_MENINGIOMA, "filters", "spatial_size", "meningioma_phantoms"),
    "vestibular_spvpa": (TINY_VESTIBULAR, "base_channels", "patch_size", "vestibular_phantoms"),
}


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_onnx_export_matches_pytorch_on_a_phantom(bundle, tmp_path, request):
    tiny, width_key, input_size_key, phantoms = CASES[bundle]
    parser = workflow(bundle, ["inference"], "infer", **tiny).parser
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()
    ckpt = tmp_path / "model.pt"
    torch.save(network.state_dict(), ckpt)
    input_shape = [1, 1, *parser.get_parsed_content(input_size_key)]
    onnx_path = tmp_path / "model.onnx"
    monai_bundle(
        "onnx_export",
        "network_def",
        "--filepath",
        str(onnx_path),
        "--ckpt_file",
        str(ckpt),
        "--meta_file",
        str(bundle_dir(bundle) / "configs" / "metadata.json"),
        "--config_file",
        config_files(bundle, "inference"),
        "--input_shape",
        str(input_shape),
        overrides={width_key: tiny[width_key], "converter_kwargs": CONVERTER_KWARGS},
    )

    case = next((request.getfixturevalue(phantoms) / "imagesTs").glob("*.nii.gz"))
    image = parser.get_parsed_content("preprocessing")({"image": str(case)})["image"][None].as_tensor()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def onnx_network(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["pred"], {"image": x.numpy()})[0])

    inferer = SlidingWindowInferer(roi_size=input_shape[2:], sw_batch_size=2, overlap=0.5, mode="gaussian")
    with torch.no_grad():
        expected = inferer(image, network)
    actual = inferer(image, onnx_network)
    assert actual.shape == expected.shape == (1, 2, *image.shape[2:])
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)
    assert float(np.abs(expected.numpy()).max()) > 10 * ATOL, "logits too small for the comparison to mean much"
