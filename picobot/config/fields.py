"""What the config models' fields are made of: `Secret`, and the checks a field's value must
pass (attrs validators: they run when a model is built, from a file or in code).

A check raises `ConfigError` naming the field; reading a file reports it under the field's
whole dotted path (`validation.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from picobot.core.errors import ConfigError

Check = Callable[[Any, "attrs.Attribute[Any]", Any], None]


@attrs.frozen(repr=False)
class Secret:
    """A token or password: printed as ``**********``, never as itself."""

    _value: str

    def get_secret_value(self) -> str:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"


# Converters: a model built in code may be given plain strings for its secrets.
def secret(value: str | Secret) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)


def optional_secret(value: str | Secret | None) -> Secret | None:
    """An empty value (e.g. from ``${TOKEN:-}``) means "not set"."""
    return secret(value) if value else None


def secrets_of(values: Mapping[str, str | Secret]) -> dict[str, Secret]:
    return {key: secret(value) for key, value in values.items()}


def check(problem_of: Callable[[Any], str | None]) -> Check:
    """A validator: `problem_of` says what is wrong with a value, or None (None, "not set",
    is never checked)."""

    def validate(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        problem = None if value is None else problem_of(value)
        if problem:
            raise ConfigError(attribute.name, problem)

    return validate


def each(problem_of: Callable[[Any], str | None]) -> Check:
    """A validator for a list (or a mapping's keys): the first item's problem."""
    return check(lambda items: next(filter(None, map(problem_of, items)), None))


def at_least(bound: float) -> Check:
    return check(lambda v: None if v >= bound else f"should be at least {bound}")


def above(bound: float) -> Check:
    return check(lambda v: None if v > bound else f"should be greater than {bound}")


def between(low: float, high: float) -> Check:
    return check(lambda v: None if low <= v <= high else f"should be from {low} to {high}")


def starts_with(*prefixes: str) -> Check:
    *first, last = prefixes
    problem = f"must start with {', '.join(first)} or {last}"
    return check(lambda v: None if v.startswith(prefixes) else problem)


not_empty = check(lambda v: None if v else "should not be empty")
