"""The ``python -m mrfbook`` command line: simulate a dictionary, train the network, map data.

Three subcommands wrap the library for users who bring their own sequence or data::

    python -m mrfbook simulate --paper --output dict.npz
    python -m mrfbook train dict.npz --output model.keras --compact --epochs 5
    python -m mrfbook map --images stack.npy --mask mask.npy --dictionary dict.npz --out maps/

Every command checks all of its input before writing anything; bad input ends
the command with a one-line message naming the problem and exit status 2, and
leaves no output behind (files are written under temporary names and renamed
only when complete).

Explained in book/cli.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mrfbook.cli.common import EXIT_USAGE, PROG, Reporter
from mrfbook.cli.map import add_map_parser
from mrfbook.cli.simulate import add_simulate_parser
from mrfbook.cli.train import add_train_parser

__all__ = ["main", "build_parser", "EXIT_USAGE"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m mrfbook`` (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="MR fingerprinting from the command line: simulate a dictionary, train the "
        "network, map T1/T2/PD from your own data. Explained in the book's chapter 'The command line'.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for add_command in (add_simulate_parser, add_train_parser, add_map_parser):
        add_command(sub)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mrfbook")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    say = Reporter(args.command, args.quiet)
    try:
        return args.func(args, say)
    except ValueError as exc:  # InputError, and library checks that name the bad parameter
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
