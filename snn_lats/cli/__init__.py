"""The ``snn-lats`` command line: one subcommand per module of this package.

Each subcommand module defines ``add_parser(subparsers)``, which registers its parser and sets
``func`` (a callable taking the parsed arguments and returning an exit code). Only the module of
the subcommand given is imported: ``snn-lats --help`` and ``--version`` need no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence

import snn_lats
from snn_lats.cli.commands import SUBCOMMANDS

__all__ = [
    "SUBCOMMANDS",
    "build_parser",
    "main",
]


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``snn-lats`` with the flags of ``commands`` (all by default; their modules
    are imported); the other subcommands are listed by name and help only."""
    parser = argparse.ArgumentParser(
        prog="snn-lats",
        description="Soft-threshold pruning (LATS) for sparse spiking and artificial neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {snn_lats.__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, help in SUBCOMMANDS.items():
        if commands is None or name in commands:
            importlib.import_module(f"snn_lats.cli.{name}").add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([command] if command in SUBCOMMANDS else [])
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)
