"""Training plumbing around MONAI's Ignite engines: the papers' engine glue (:mod:`~common.training.engines`),
verified and atomic checkpoints with resume (:mod:`~common.training.checkpoints`), batch normalisation frozen for
fine-tuning on patches (:mod:`~common.training.batch_norm`), the mean of several checkpoints
(:mod:`~common.training.weight_averaging`), MLflow tracking (:mod:`~common.training.tracking`) and running bundle
configs from Python (:mod:`~common.training.bundle_runner`)."""
