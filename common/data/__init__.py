"""Datasets as folders with a Decathlon-style ``dataset.json``: finding and checking cases, volume-stratified folds."""

from common.data.check import check_dataset, check_training_data, checked_cases
from common.data.containment import OutsideDatasetError
from common.data.datalist import find_cases, read_datalist
from common.data.folds import ensure_folds, load_split, make_folds

__all__ = [
    "OutsideDatasetError",
    "check_dataset",
    "check_training_data",
    "checked_cases",
    "ensure_folds",
    "find_cases",
    "load_split",
    "make_folds",
    "read_datalist",
]
