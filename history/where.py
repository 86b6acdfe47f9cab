"""A WHERE clause built from conditions and their `%s` arguments, for both drivers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Where:
    """Conditions joined by AND, with the arguments of their `%s` placeholders in order."""

    conditions: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, condition: str, *args: Any) -> Where:
        """Add one condition with as many arguments as it has placeholders."""
        self.conditions.append(condition)
        self.args.extend(args)
        return self

    def add_in(self, column: str, values: Iterable[Any]) -> Where:
        """`column IN (...)` for non-empty `values` (sorted, so queries repeat exactly)."""
        items = sorted(values)
        if items:
            self.add(f"{column} IN ({', '.join(['%s'] * len(items))})", *items)
        return self

    def copy(self) -> Where:
        """An independent copy, to extend for one query."""
        return Where(list(self.conditions), list(self.args))

    def sql(self) -> str:
        """` WHERE a AND b`, or the empty string without conditions."""
        return " WHERE " + " AND ".join(f"({c})" for c in self.conditions) if self.conditions else ""
