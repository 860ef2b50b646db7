"""Inference: the bf16 / ``channels_last_3d`` fast path of every forward pass (:mod:`~common.inference.precision`),
ensemble and flip test-time inferers (:mod:`~common.inference.inferers`) and fault-tolerant batch inference
(:mod:`~common.inference.batch`)."""
