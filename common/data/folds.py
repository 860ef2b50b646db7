"""Volume-stratified k-fold splits (Bouget et al. 2021, Section 3): train on k-2 folds, validate on one, test on one.

Each fold holds a similar distribution of tumour volumes: cases are sorted by label volume and every consecutive
block of k cases is dealt out to the k folds in a random order. Fold ``f`` of the rotation tests on fold ``f``,
validates on fold ``f + 1 (mod k)`` and trains on the rest (3 / 1 / 1 for k = 5).

Command line: ``make-folds DATASET_DIR [--num-folds 5] [--seed 0]`` (or ``python -m common.data.folds``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from common.data.containment import check_contained
from common.data.datalist import read_datalist

__all__ = ["SPLITS_GLOB", "default_splits_path", "ensure_folds", "label_volume_ml", "load_split", "main", "make_folds"]

SECTIONS = ("training", "validation", "test")
#: The names :func:`default_splits_path` gives, as a glob pattern.
SPLITS_GLOB = "splits_*fold_seed*.json"


def label_volume_ml(path: str) -> float:
    """Foreground volume of a label file in ml."""
    img = nib.load(path)
    voxels = int(np.count_nonzero(np.asanyarray(img.dataobj)))
    return voxels * float(abs(np.linalg.det(img.affine[:3, :3]))) / 1000.0


def _assign_folds(volumes: Sequence[float], num_folds: int, seed: int) -> list[int]:
    """Fold index per case: sort by volume, deal each block of ``num_folds`` cases out in a random order."""
    rng = np.random.default_rng(seed)
    order = np.argsort(np.asarray(volumes), kind="stable")
    folds = np.empty(len(volumes), dtype=int)
    for start in range(0, len(order), num_folds):
        block = order[start : start + num_folds]
        folds[block] = rng.permutation(num_folds)[: len(block)]
    return folds.tolist()


def make_folds(
    datalist: str,
    output: str,
    num_folds: int = 5,
    seed: int = 0,
    section: str = "training",
    exclude: Collection[str] = (),
    allow_outside_dataset: bool = False,
) -> str:
    """Write volume-stratified splits of a Decathlon datalist section to ``output`` (JSON) and return its path.

    The file holds, for each fold ``f``, the ``training`` / ``validation`` / ``test`` lists with paths relative to
    the datalist's folder, each case's volume and fold, and the ``excluded`` images.
    Cases whose image is in ``exclude`` (those that failed ``common.data.check``) are left out of every fold.
    Entries that resolve outside the datalist's folder are refused unless ``allow_outside_dataset``.

    Raises:
        OutsideDatasetError: an entry resolves outside the datalist's folder.
        ValueError: ``num_folds < 3`` or fewer cases than folds.
        FileExistsError: ``output`` exists (splits are never overwritten; delete the file to redo them).
    """
    if num_folds < 3:
        raise ValueError(f"num_folds must be at least 3 (train / validation / test), got {num_folds}.")
    if os.path.exists(output):
        raise FileExistsError(f"{output} exists; splits are never overwritten. Delete it to make new ones.")
    root = os.path.dirname(os.path.abspath(datalist))
    cases = read_datalist(datalist, section, root, allow_outside_dataset)
    excluded = _real_paths(exclude)
    kept = [c for c in cases if os.path.realpath(c["image"]) not in excluded]
    left_out = sorted("./" + os.path.relpath(c["image"], root) for c in cases if c not in kept)
    cases = kept
    if len(cases) < num_folds:
        raise ValueError(f"{datalist} has {len(cases)} '{section}' cases; {num_folds} folds need at least that many.")
    volumes = [label_volume_ml(case["label"]) for case in cases]
    assignment = _assign_folds(volumes, num_folds, seed)
    relative = [
        {k: "./" + os.path.relpath(v, root) if k in ("image", "label") else v for k, v in c.items()} for c in cases
    ]
    folds = []
    for f in range(num_folds):
        role = {f: "test", (f + 1) % num_folds: "validation"}
        split: dict[str, list] = {name: [] for name in SECTIONS}
        for case, fold in zip(relative, assignment):
            split[role.get(fold, "training")].append(case)
        folds.append({"fold": f, **split})
    content = {
        "datalist": os.path.basename(datalist),
        "num_folds": num_folds,
        "seed": seed,
        "cases": [{**c, "volume_ml": v, "fold": a} for c, v, a in zip(relative, volumes, assignment)],
        "excluded": left_out,
        "folds": folds,
    }
    tmp = f"{output}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(content, fh, indent=2)
    os.replace(tmp, output)
    return output


def default_splits_path(datalist: str, num_folds: int, seed: int) -> str:
    """``<datalist folder>/splits_<k>fold_seed<seed>.json``."""
    return os.path.join(os.path.dirname(os.path.abspath(datalist)), f"splits_{num_folds}fold_seed{seed}.json")


def ensure_folds(
    datalist: str,
    num_folds: int = 5,
    seed: int = 0,
    exclude: Collection[str] = (),
    allow_outside_dataset: bool = False,
) -> str:
    """Path of :func:`default_splits_path`, made by :func:`make_folds` (leaving out ``exclude``) if missing.

    Raises:
        ValueError: the existing splits file lists other cases than the datalist's ``training`` section (the dataset
            changed after the folds were made): folds are never remade silently, the message says which file to delete.
    """
    output = default_splits_path(datalist, num_folds, seed)
    if os.path.isfile(output):
        _check_splits_match(output, datalist, allow_outside_dataset)
        return output
    return make_folds(datalist, output, num_folds, seed, exclude=exclude, allow_outside_dataset=allow_outside_dataset)


def _check_splits_match(splits_file: str, datalist: str, allow_outside_dataset: bool) -> None:
    """Raise if ``splits_file`` was made from other ``training`` cases than ``datalist`` now lists."""
    root = os.path.dirname(os.path.abspath(datalist))
    listed = _real_paths([c["image"] for c in read_datalist(datalist, "training", root, allow_outside_dataset)])
    with open(splits_file, encoding="utf-8") as fh:
        content = json.load(fh)
    images = [c["image"] for c in content["cases"]] + content["excluded"]
    split = _real_paths([os.path.join(root, image) for image in images])
    if split != listed:
        raise ValueError(
            f"{splits_file} was made from other cases than {datalist} lists now ({len(split)} there, {len(listed)} "
            f"here, {len(split ^ listed)} differ): the dataset changed after its folds were made. Delete {splits_file} "
            "to make new folds (folds are never remade silently)."
        )


def _real_paths(paths: Collection[str]) -> set[str]:
    return {os.path.realpath(p) for p in paths}


def load_split(
    splits_file: str,
    fold: int,
    section: str,
    exclude: Collection[str] = (),
    allow_outside_dataset: bool = False,
) -> list[dict]:
    """The ``section`` list (``training`` / ``validation`` / ``test``) of fold ``fold``, with absolute paths.

    Cases whose image is in ``exclude`` are left out (splits made before a case went bad still list it).

    Raises:
        OutsideDatasetError: an entry resolves outside the splits file's folder and ``allow_outside_dataset`` is
            false (a splits file edited by hand, or made with ``allow_outside_dataset``).
    """
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, got {section!r}.")
    with open(splits_file, encoding="utf-8") as fh:
        content = json.load(fh)
    if not 0 <= fold < content["num_folds"]:
        raise ValueError(f"fold must be in [0, {content['num_folds'] - 1}] for {splits_file}, got {fold}.")
    root = Path(splits_file).resolve().parent
    excluded = _real_paths(exclude)
    raw = content["folds"][fold][section]
    cases = [{k: str(root / v) if k in ("image", "label") else v for k, v in c.items()} for c in raw]
    check_contained(
        cases, str(root), splits_file, f"folds[{fold}].{section}", raw=raw, allow_outside_dataset=allow_outside_dataset
    )
    return [c for c in cases if os.path.realpath(c["image"]) not in excluded]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point: write volume-stratified folds next to a dataset's ``dataset.json``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", help="folder with dataset.json (Decathlon layout)")
    parser.add_argument("--datalist", help="datalist JSON (default: DATASET_DIR/dataset.json)")
    parser.add_argument("--num-folds", type=int, default=5, help="number of folds (default: 5, as in the paper)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the fold assignment within volume blocks (default: 0)"
    )
    args = parser.parse_args(argv)
    datalist = args.datalist or os.path.join(args.dataset_dir, "dataset.json")
    print(make_folds(datalist, default_splits_path(datalist, args.num_folds, args.seed), args.num_folds, args.seed))


if __name__ == "__main__":
    main()
