"""Evaluation: the papers' metrics (:mod:`~common.evaluation.metrics`), lesion measurements
(:mod:`~common.evaluation.lesions`), k-fold cross-validation and its tables (:mod:`~common.evaluation.crossval`),
figures (:mod:`~common.evaluation.figures`), the clinical tumour report (:mod:`~common.evaluation.report`) and the
phantom test of shipped weights (:mod:`~common.evaluation.phantom_test`)."""
