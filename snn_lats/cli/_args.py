"""The flags of the ``snn-lats`` subcommands, generated from the :class:`TrainConfig` declarations.

A flag's names, type, choices and help are those of its field (:func:`~snn_lats.engine.recipe.option`),
and its default is None, so that the flags actually given can be told from a recipe's values and
the built-in defaults (:func:`explicit_flags`).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from snn_lats.engine.recipe import FIELD_NAMES, NETWORK_FIELDS, TrainConfig, field_type

__all__ = ["add_config_flag", "add_network_arguments", "add_training_arguments", "explicit_flags", "plain"]

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_GROUPS = {
    "data": "data",
    "network": "network",
    "optimisation": "optimisation",
    "pruning": "pruning (soft threshold w = S_d(theta))",
    "run": "run",
}


def _help(name: str) -> str:
    f = _FIELDS[name]
    default = f.default
    if default is None:
        return f.metadata["help"]
    return f"{f.metadata['help']} (default: {default})".strip()


def add_config_flag(container, name: str, help: str | None = None) -> None:
    """Add the flag of the :class:`TrainConfig` field ``name`` to a parser or an argument group."""
    f = _FIELDS[name]
    flags = f.metadata["flags"] or ("--" + name.replace("_", "-"),)
    kwargs: dict[str, Any] = {"dest": name, "default": None, "help": _help(name) if help is None else help}
    expected, _ = field_type(name)
    if expected is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = expected
    if f.metadata["choices"] is not None:
        kwargs["choices"] = f.metadata["choices"]
    container.add_argument(*flags, **kwargs)


def add_network_arguments(group, model_help: str | None = None) -> None:
    """The flags that choose and shape a network (shared by ``train`` and ``sops``)."""
    for name in NETWORK_FIELDS:
        add_config_flag(group, name, model_help if name == "model" else None)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Every :class:`TrainConfig` field as a flag, in argument groups."""
    add_config_flag(parser, "recipe")
    for group, title in _GROUPS.items():
        container = parser.add_argument_group(title)
        for f in dataclasses.fields(TrainConfig):
            if f.metadata["group"] == group:
                add_config_flag(container, f.name)


def explicit_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration fields the user set on the command line."""
    return {k: v for k, v in vars(args).items() if k in FIELD_NAMES and k != "recipe" and v is not None}


def plain(docstring: str) -> str:
    """A module docstring as ``--help`` shows it: no reStructuredText markup (``code``, :func:`x`,
    a literal block's ``::``)."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", docstring)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.M)
