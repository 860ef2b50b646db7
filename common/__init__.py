"""Code shared by both bundles, grouped by role as MONAI groups its own: network blocks and attention modules, losses,
transforms, data (datalists, checks, folds), phantoms, training, inference, evaluation, io and benchmarking."""
