"""Datasets as folders with a Decathlon-style ``dataset.json``: finding cases and volume-stratified folds."""

from common.data.datalist import find_cases
from common.data.folds import ensure_folds, load_split, make_folds

__all__ = ["ensure_folds", "find_cases", "load_split", "make_folds"]
