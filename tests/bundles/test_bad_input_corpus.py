"""The bad-input corpus with the shipped weights: one real batch ``monai.bundle run`` per bundle over unseen phantoms
mixed with every bad input of :mod:`common.phantoms.bad_inputs`, each phantom run again on its own.

:func:`common.evaluation.bad_input_corpus.run_corpus` runs the subprocesses and reports every check that failed; the
test also checks the outcome of each case itself.
"""

from __future__ import annotations

import pytest

from common.evaluation.bad_input_corpus import CORPORA, markdown, run_corpus
from common.phantoms.bad_inputs import BAD_IMAGES, DUPLICATE_ORIGINAL


@pytest.mark.parametrize("bundle", sorted(CORPORA))
def test_batch_over_the_corpus_segments_good_cases_as_alone_and_names_every_bad_one(bundle, tmp_path):
    result = run_corpus(bundle, tmp_path, num_good=2)
    print(markdown(result))
    assert result["problems"] == [], "\n".join(result["problems"])
    cases = {case["case"]: case for case in result["cases"]}

    phantoms = [case for case in cases.values() if case["kind"] == "phantom"]
    assert len(phantoms) == 2
    for case in phantoms:  # segmented by the trained weights, identically in the batch and alone
        assert case["batch"] == "segmented" and case["same_mask"], case
        assert case["dice_batch"] == case["dice_alone"] and case["dice_batch"] > 0.5, case
    assert cases[DUPLICATE_ORIGINAL]["batch"] == "segmented"

    for name, phrase in BAD_IMAGES.items():
        assert cases[name]["batch"] == "failed", cases[name]
        assert name in cases[name]["error"] and phrase in cases[name]["error"], cases[name]
    # the phantoms with their labels, the bad inputs and the valid first copy of the duplicate name, dataset.json
    assert result["inputs_unchanged"] and result["num_input_files"] >= 2 * 2 + len(BAD_IMAGES) + 2
