"""The ``snn-lats`` command line: one subcommand per module of this package.

Each subcommand module defines ``add_parser(subparsers)``, which registers its parser and sets
``func`` (a callable taking the parsed arguments and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

import snn_lats

__all__ = [
    "SUBCOMMANDS",
    "build_parser",
    "main",
]

# Module names under snn_lats.cli, in the order `snn-lats --help` lists them.
SUBCOMMANDS: tuple[str, ...] = ("train", "evaluate", "export", "compare", "sops")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snn-lats",
        description="Soft-threshold pruning (LATS) for sparse spiking and artificial neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {snn_lats.__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"snn_lats.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)
