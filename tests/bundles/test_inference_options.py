"""Ensemble and flip TTA are config keys of both bundles' inference and evaluate configs."""

from __future__ import annotations

import pytest
import torch
from bundle_helpers import bundle_dir, workflow
from monai.inferers import SimpleInferer, SlidingWindowInferer

from common.inferers import EnsembleFlipInferer

CASES = [
    ("meningioma_agunet", ["inference"], "inferer", SimpleInferer, [(0,), (1,), (0, 1)]),
    ("meningioma_agunet", ["train", "evaluate"], "validate#inferer", SimpleInferer, [(0,), (1,), (0, 1)]),
    ("vestibular_spvpa", ["inference"], "inferer", SlidingWindowInferer, [(0,)]),
    ("vestibular_spvpa", ["train", "evaluate"], "validate#inferer", SlidingWindowInferer, [(0,)]),
]


@pytest.mark.parametrize(("bundle", "configs", "inferer_id", "base", "flips"), CASES)
def test_flip_tta_and_ensemble_keys(bundle, configs, inferer_id, base, flips, tmp_path):
    root = {"bundle_root": str(bundle_dir(bundle))}
    default = workflow(bundle, configs, "infer", **root).parser.get_parsed_content(inferer_id)
    assert isinstance(default, EnsembleFlipInferer) and isinstance(default.inferer, base)
    assert default.flips == [] and default.checkpoints == []  # off by default: the wrapped inferer alone
    models = [str(tmp_path / f"fold{f}.pt") for f in range(2)]
    for path in models:
        torch.save({}, path)
    parser = workflow(bundle, configs, "infer", flip_tta=True, ensemble_checkpoints=models, **root).parser
    tta = parser.get_parsed_content(inferer_id)
    assert tta.flips == flips and tta.checkpoints == models
    handlers = "handlers" if inferer_id == "inferer" else "validate#handlers"
    assert parser.get_parsed_content(f"{handlers}#0#load_path") == models[0]  # the network is the first member
