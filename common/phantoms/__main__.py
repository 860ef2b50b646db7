"""Command line: ``python -m common.phantoms {meningioma,vestibular} --out DIR --num-training N [--num-test M] ...``.

Each phantom family is a subcommand registered in :data:`_COMMANDS`; it generates the dataset only if the folder does
not already hold it with the same parameters, and prints the dataset folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from common.phantoms.meningioma import SMALL_LESION_FRACTION, ensure_meningioma_dataset
from common.phantoms.vestibular import DEFAULT_MAX_VOXELS as VESTIBULAR_MAX_VOXELS
from common.phantoms.vestibular import NO_TUMOUR_PROBABILITY, TARGET_VOLUME_RANGE_ML, ensure_vestibular_dataset

__all__ = ["build_parser", "main"]


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by every phantom family."""
    parser.add_argument("--out", required=True, help="dataset folder (new, empty or a previous phantom dataset)")
    parser.add_argument("--num-training", type=int, required=True, help="number of training cases")
    parser.add_argument("--num-test", type=int, default=0, help="number of test cases (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    parser.add_argument(
        "--spacing-scale", type=float, default=1.0, help="factor on the voxel spacing, > 1 for small volumes"
    )
    parser.add_argument(
        "--max-voxels", type=float, default=None, help="upper bound on the voxels of a case (default: per family)"
    )


def _add_meningioma_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the meningioma family only."""
    parser.add_argument(
        "--small-lesion-fraction",
        type=float,
        default=SMALL_LESION_FRACTION,
        help=f"share of lesions below 3 ml (default: {SMALL_LESION_FRACTION})",
    )


def _add_vestibular_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the vestibular family only: the tumour mix."""
    parser.add_argument(
        "--no-tumour-probability",
        type=float,
        default=NO_TUMOUR_PROBABILITY,
        help=f"share of cases without a tumour (default: {NO_TUMOUR_PROBABILITY})",
    )
    low, high = TARGET_VOLUME_RANGE_ML
    parser.add_argument(
        "--tumour-volume-ml",
        type=float,
        nargs=2,
        default=TARGET_VOLUME_RANGE_ML,
        metavar=("LOW", "HIGH"),
        help=f"range of the tumour volumes, drawn log-uniformly, within {low}-{high} (default: all of it)",
    )


def _run_meningioma(args: argparse.Namespace) -> str:
    """Generates the meningioma dataset described by the parsed arguments."""
    return ensure_meningioma_dataset(
        args.out,
        num_training=args.num_training,
        num_test=args.num_test,
        seed=args.seed,
        spacing_scale=args.spacing_scale,
        max_voxels=20e6 if args.max_voxels is None else args.max_voxels,
        small_lesion_fraction=args.small_lesion_fraction,
    )


def _run_vestibular(args: argparse.Namespace) -> str:
    """Generates the vestibular schwannoma dataset described by the parsed arguments."""
    return ensure_vestibular_dataset(
        args.out,
        num_training=args.num_training,
        num_test=args.num_test,
        seed=args.seed,
        spacing_scale=args.spacing_scale,
        max_voxels=VESTIBULAR_MAX_VOXELS if args.max_voxels is None else args.max_voxels,
        no_tumour_probability=args.no_tumour_probability,
        tumour_volume_ml=tuple(args.tumour_volume_ml),
    )


_COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], str]]] = {
    "meningioma": ("contrast-enhanced T1 heads with extra-axial meningioma-like lesions", _run_meningioma),
    "vestibular": ("high-resolution T2 posterior fossae with one vestibular schwannoma", _run_vestibular),
}
#: Arguments that only one family takes.
_FAMILY_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "meningioma": _add_meningioma_arguments,
    "vestibular": _add_vestibular_arguments,
}


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser with one subcommand per phantom family."""
    parser = argparse.ArgumentParser(
        prog="phantoms", description="Write a deterministic synthetic MRI phantom dataset in Decathlon layout."
    )
    subparsers = parser.add_subparsers(dest="family", required=True, metavar="FAMILY")
    for name, (help_text, _) in _COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        _add_common_arguments(subparser)
        if name in _FAMILY_ARGUMENTS:
            _FAMILY_ARGUMENTS[name](subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m common.phantoms`` and of the ``phantoms`` console script.

    Returns:
        Process exit status: 0 on success, 1 if the dataset cannot be written (e.g. a foreign non-empty folder);
        argument errors exit with status 2 through argparse.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(_COMMANDS[args.family][1](args))
    except (OSError, ValueError) as error:
        print(f"phantoms: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
