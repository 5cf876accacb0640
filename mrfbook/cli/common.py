"""What every command of ``python -m mrfbook`` shares: progress lines, option types, the sequence options.

Explained in book/cli.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mrfbook.cli.inputs import (
    InputError,
    load_sequence,
)

__all__ = [
    "EXIT_USAGE",
    "PROG",
    "Reporter",
    "check_output_file",
    "positive",
    "fraction",
    "add_sequence_options",
    "sequence_from_args",
    "load_dictionary",
]


#: Exit status for bad input or usage (argparse uses the same).
EXIT_USAGE = 2


PROG = "python -m mrfbook"


class Reporter:
    """Prints progress lines to stderr unless ``--quiet``, and warnings always.

    Explained in book/cli.md.
    """

    def __init__(self, command: str, quiet: bool) -> None:
        self.command = command
        self.quiet = quiet

    @property
    def progress(self) -> bool:
        """Whether progress bars are shown (not with ``--quiet``)."""
        return not self.quiet

    def __call__(self, message: str) -> None:
        """Print ``message`` as one progress line on stderr, unless quiet."""
        if not self.quiet:
            print(f"mrfbook {self.command}: {message}", file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """Print ``message`` as one warning line on stderr (``mrfbook COMMAND: warning: ...``), even if quiet."""
        print(f"mrfbook {self.command}: warning: {message}", file=sys.stderr, flush=True)


def check_output_file(path: Path, option: str, suffix: str) -> Path:
    """Refuse an output path with the wrong suffix, in a missing folder, or that is a folder."""
    if path.suffix.lower() != suffix:
        raise InputError(f"{option}: {path} must end in {suffix}")
    if not path.parent.is_dir():
        raise InputError(f"{option}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"{option}: {path} is a folder; give a file name ending in {suffix}")
    return path


def positive(kind: type, name: str) -> Callable[[str], float | int]:
    """argparse type: a finite number > 0 (``kind`` int or float)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a {kind.__name__} > 0, got {text!r}") from None
        if not np.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


def add_sequence_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """Add the options that describe a sequence (``--paper`` or a CSV schedule, inversion) to ``parser``."""
    group = parser.add_argument_group(
        "sequence",
        None if required else
        "Optional: the sequence your data was acquired with. It must match the sequence recorded "
        "in the dictionary/model, else the command refuses.",
    )
    choice = group.add_mutually_exclusive_group(required=required)
    choice.add_argument(
        "--sequence",
        metavar="FILE",
        type=Path,
        help="sequence file: CSV with header columns flip_angle_deg,tr_ms,te_ms[,rf_phase_deg] "
        "(one line per time point), or .npz with arrays of those names, or .npy holding an "
        "(L, 3)/(L, 4) array with columns in that order (or a structured array with those fields)",
    )
    choice.add_argument(
        "--paper",
        action="store_true",
        help="the paper's FISP sequence (mrfbook.physics.sequence.paper_sequence)",
    )
    group.add_argument(
        "--n-timepoints",
        type=positive(int, "--n-timepoints"),
        default=200,
        metavar="L",
        help="length of the --paper sequence (default: 200)",
    )
    group.add_argument(
        "--no-inversion",
        action="store_true",
        help="sequence file without the ideal 180° inversion before the first pulse "
        "(default for --sequence: with inversion, like the paper)",
    )
    group.add_argument(
        "--inversion-delay-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="relaxation between inversion and first pulse, ms >= 0 (default: 0)",
    )


def sequence_from_args(args: argparse.Namespace):
    """The FispSequence named by --sequence/--paper, or None if neither was given."""
    if getattr(args, "sequence", None) is not None:
        if args.n_timepoints != 200:
            raise InputError("--n-timepoints: only used with --paper; a --sequence file sets its own length")
        return load_sequence(
            args.sequence, inversion=not args.no_inversion, inversion_delay_ms=args.inversion_delay_ms
        )
    if getattr(args, "paper", False):
        from mrfbook.physics.sequence import paper_sequence

        if args.no_inversion or args.inversion_delay_ms != 0.0:
            raise InputError("--no-inversion/--inversion-delay-ms: only used with --sequence FILE")
        try:
            return paper_sequence(args.n_timepoints)
        except ValueError as exc:
            raise InputError(f"--n-timepoints: {exc}") from exc
    return None


def load_dictionary(path: Path, expected_sequence=None, *, option: str = "--dictionary"):
    """Load a dictionary file from 'simulate'; refuse another sequence than ``expected_sequence`` (names ``option``)."""
    from mrfbook.physics.dictionary import Dictionary, StaleDictionaryError

    if not path.is_file():
        raise InputError(f"{option}: file not found: {path}")
    try:
        return Dictionary.load(path, expected_sequence=expected_sequence)
    except StaleDictionaryError as exc:  # its message names the file and both sequence digests
        raise InputError(f"{option}: another sequence: {exc}") from exc
    except (ValueError, OSError, KeyError, EOFError) as exc:
        raise InputError(f"{option}: cannot use {path}: {exc}") from exc
