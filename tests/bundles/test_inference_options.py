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
    assert default.flips == []  # off by default
    # the vestibular fine network averages its two shipped weight files by default; the meningioma network is alone
    shipped = [str(bundle_dir(bundle) / "models" / name) for name in ("model.pt", "model_tiny.pt")]
    assert default.checkpoints == (shipped if bundle == "vestibular_spvpa" else [])
    models = [str(tmp_path / f"fold{f}.pt") for f in range(2)]
    for path in models:
        torch.save({}, path)
    parser = workflow(bundle, configs, "infer", flip_tta=True, ensemble_checkpoints=models, **root).parser
    tta = parser.get_parsed_content(inferer_id)
    assert tta.flips == flips and tta.checkpoints == models
    handlers = "handlers" if configs == ["inference"] else "validate#handlers"
    assert parser.get_parsed_content(f"{handlers}#0#load_path") == models[0]  # the network is the first member


@pytest.mark.parametrize("configs", [["inference"], ["train", "evaluate"]])
def test_vestibular_weights_of_your_own_run_alone_unless_paired(configs, tmp_path):
    """The shipped fourth-stage weights join only the shipped model.pt (a ckpt_path that large_files.yml lists), so
    weights trained elsewhere, or in MONAI Label's copy of the bundle, are never averaged with them by surprise."""
    own, pair = str(tmp_path / "model.pt"), str(tmp_path / "pair.pt")
    for path in (own, pair):
        torch.save({}, path)
    root = {"bundle_root": str(bundle_dir("vestibular_spvpa"))}
    alone = workflow("vestibular_spvpa", configs, "infer", ckpt_path=own, **root).parser
    assert alone.get_parsed_content("fine_inferer").checkpoints == []
    paired = workflow("vestibular_spvpa", configs, "infer", ckpt_path=own, tiny_ckpt_path=pair, **root).parser
    assert paired.get_parsed_content("fine_inferer").checkpoints == [own, pair]


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
