"""``python -m mrfbook simulate``: the dictionary of a sequence on a (T1, T2) grid, saved as .npz.

Explained in book/cli.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mrfbook.cli.common import (
    Reporter,
    add_sequence_options,
    check_output_file,
    positive,
    sequence_from_args,
)
from mrfbook.cli.inputs import (
    InputError,
)
from mrfbook.utils.timing import Stopwatch

__all__ = ['add_simulate_parser']


def _grid_from_args(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    from mrfbook.physics.dictionary import paper_grid

    (t1_lo, t1_hi), (t2_lo, t2_hi) = args.t1_range, args.t2_range
    for option, lo, hi in (("--t1-range", t1_lo, t1_hi), ("--t2-range", t2_lo, t2_hi)):
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or hi < lo:
            raise InputError(f"{option}: need 0 < MIN <= MAX (ms), got {lo:g} {hi:g}")
    try:
        t1, t2 = paper_grid(
            t1_start_ms=t1_lo, t2_start_ms=t2_lo, step_ms=args.step, t1_max_ms=t1_hi, t2_max_ms=t2_hi
        )
    except ValueError as exc:
        raise InputError(f"--t1-range/--t2-range/--step: {exc}") from exc
    return t1, t2


def _cmd_simulate(args: argparse.Namespace, say: Reporter) -> int:
    from mrfbook.physics.dictionary import build_dictionary

    output = check_output_file(args.output, "--output", ".npz")
    sequence = sequence_from_args(args)
    t1, t2 = _grid_from_args(args)
    size_mb = t1.size * sequence.n_timepoints * 4 / 1e6
    say(f"simulating {t1.size:,} atoms x {sequence.n_timepoints} time points ({size_mb:.1f} MB)")
    clock = Stopwatch().start()
    dictionary = build_dictionary(sequence, t1, t2, progress=say.progress)
    dictionary.save(output)  # written under a temporary name and renamed (atomic)
    say(f"wrote {output} ({dictionary.n_atoms:,} atoms, sequence digest {sequence.digest[:12]}) "
        f"in {clock.elapsed:.1f} s")
    return 0


def add_simulate_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` command to the parser of ``python -m mrfbook``."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate a dictionary for a sequence and save it as .npz",
        description="Simulate the dictionary (EPG, FISP) of a sequence on a (T1, T2) grid with "
        "T1 >= T2 and save it as .npz (mrfbook.physics.dictionary.Dictionary.save; the file records the sequence).",
    )
    add_sequence_options(p, required=True)
    grid = p.add_argument_group("grid (ms; only pairs with T1 >= T2 are kept)")
    grid.add_argument("--t1-range", nargs=2, type=float, metavar=("MIN", "MAX"), default=(1.0, 5000.0),
                      help="T1 from MIN to MAX ms inclusive (default: 1 5000, the paper's)")
    grid.add_argument("--t2-range", nargs=2, type=float, metavar=("MIN", "MAX"), default=(1.0, 2000.0),
                      help="T2 from MIN to MAX ms inclusive (default: 1 2000, the paper's)")
    grid.add_argument("--step", type=positive(float, "--step"), default=10.0, metavar="MS",
                      help="grid spacing in ms on both axes (default: 10, the paper's; 80,100 atoms)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DICT.npz", help="output file (.npz)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_simulate)
