"""`value`: the dataclass decorator for what every message's path builds many of (messages,
run and model events, rendered text).

Frozen for the type checker: mypy --strict refuses any assignment to a field, and
`dataclasses.replace` makes a changed copy. Not frozen at run time, where frozen's `__init__`
(an `object.__setattr__` call per field) cost ~0.12 µs a field: ~1.7 µs an outbound message,
and about 9 µs of the real path's ~215 per message (benchmarks/realpath.py). So a value must
not be hashed (nothing does: a frozen one with `metadata` could not be either).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

__all__ = ["value"]

if TYPE_CHECKING:
    from dataclasses import dataclass as value
else:

    def value(**options: Any) -> Any:
        return dataclass(**{**options, "frozen": False})
