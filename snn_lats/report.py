"""The one report type of snn_lats: rows of per-layer figures plus totals.

Sparsity reports (pruning), synaptic-operation reports (estimators) and run comparisons (CLI)
are all a :class:`Report`, rendered as an aligned terminal table, JSON or CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from snn_lats._io import atomic_write_text

__all__ = [
    "Report",
]


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0:
            return "0"
        if abs(value) >= 1e6 or abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:.4f}"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # 0-d tensors and numpy scalars
        return value.item()
    return value


@dataclass
class Report:
    """Per-layer ``rows`` (dicts sharing keys) and whole-model ``totals``.

    ``columns`` chooses and orders the row keys shown by :meth:`table` (all keys if empty);
    JSON and CSV always carry every key.
    """

    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    columns: Sequence[str] = ()
    notes: list[str] = field(default_factory=list)

    def _keys(self) -> list[str]:
        keys: list[str] = []
        for row in self.rows:
            keys.extend(k for k in row if k not in keys)
        return keys

    def table(self) -> str:
        """An aligned plain-text table: a header, one line per row, then totals and notes."""
        keys = list(self.columns) or self._keys()
        cells = [[_format(row.get(k)) for k in keys] for row in self.rows]
        widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]

        def line(values: Sequence[str]) -> str:
            # First column (names) left-aligned, figures right-aligned.
            return "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))
            ).rstrip()

        out = [self.title, line(keys), line(["-" * w for w in widths])]
        out += [line(c) for c in cells]
        if self.totals:
            out.append("")
            name_width = max(len(k) for k in self.totals)
            out += [f"{k.ljust(name_width)}  {_format(v)}" for k, v in self.totals.items()]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({"title": self.title, "rows": self.rows, "totals": self.totals, "notes": self.notes})

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as JSON; also written atomically to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The rows as CSV (one line per layer; totals are in JSON and the table)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self._keys(), lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _format(v) if isinstance(v, (tuple, list)) else _jsonable(v) for k, v in row.items()})
        text = buffer.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(
            title=data["title"], rows=list(data["rows"]), totals=dict(data["totals"]), notes=list(data.get("notes", []))
        )
