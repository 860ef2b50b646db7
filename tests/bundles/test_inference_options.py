"""Ensemble and flip TTA are config keys of both bundles' inference and evaluate configs."""

from __future__ import annotations

import pytest
import torch
from bundle_helpers import bundle_dir, workflow
from monai.inferers import SimpleInferer, SlidingWindowInferer

from common.inference.inferers import EnsembleFlipInferer
from common.inference.precision import PrecisionInferer

CASES = [
    ("meningioma_agunet", ["inference"], "inferer", SimpleInferer, [(0,), (1,), (0, 1)]),
    ("meningioma_agunet", ["train", "evaluate"], "validate#inferer", SimpleInferer, [(0,), (1,), (0, 1)]),
    # the vestibular bundle's ensemble / flip inferer is the fine stage of coarse-to-fine inference
    ("vestibular_spvpa", ["inference"], "fine_inferer", SlidingWindowInferer, [(0,)]),
    ("vestibular_spvpa", ["train", "evaluate"], "fine_inferer", SlidingWindowInferer, [(0,)]),
]


@pytest.mark.parametrize(("bundle", "configs", "inferer_id", "base", "flips"), CASES)
def test_flip_tta_and_ensemble_keys(bundle, configs, inferer_id, base, flips, tmp_path):
    root = {"bundle_root": str(bundle_dir(bundle))}
    default = workflow(bundle, configs, "infer", **root).parser.get_parsed_content(inferer_id)
    assert isinstance(default, EnsembleFlipInferer) and isinstance(default.inferer, PrecisionInferer)
    assert isinstance(default.inferer.inferer, base)
    assert default.flips == [] and default.checkpoints == []  # off by default: the wrapped inferer alone
    models = [str(tmp_path / f"fold{f}.pt") for f in range(2)]
    for path in models:
        torch.save({}, path)
    parser = workflow(bundle, configs, "infer", flip_tta=True, ensemble_checkpoints=models, **root).parser
    tta = parser.get_parsed_content(inferer_id)
    assert tta.flips == flips and tta.checkpoints == models
    handlers = "handlers" if configs == ["inference"] else "validate#handlers"
    assert parser.get_parsed_content(f"{handlers}#0#load_path") == models[0]  # the network is the first member


def test_vestibular_inference_is_coarse_to_fine_unless_localise_false_or_a_box_is_given():
    from vestibular_spvpa.localisation import CoarseToFineInferer

    root = {"bundle_root": str(bundle_dir("vestibular_spvpa"))}
    for configs in (["inference"], ["train", "evaluate"]):
        inferer_id = "inferer" if configs == ["inference"] else "validate#evaluator#inferer"
        default = workflow("vestibular_spvpa", configs, "infer", **root).parser.get_parsed_content(inferer_id)
        assert isinstance(default, CoarseToFineInferer) and isinstance(default.inferer, EnsembleFlipInferer)
        off = workflow("vestibular_spvpa", configs, "infer", localise=False, **root).parser
        assert isinstance(off.get_parsed_content(inferer_id), EnsembleFlipInferer)
    boxed = workflow("vestibular_spvpa", ["inference"], "infer", roi_center_mm=[0.0, 0.0, 0.0], **root).parser
    assert isinstance(boxed.get_parsed_content("inferer"), EnsembleFlipInferer)
