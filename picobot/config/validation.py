"""A parsed YAML document into the models (cattrs): strict types, unknown keys refused, and
every problem collected with its dotted key path into one `ConfigError`.

Strict: a value of the wrong type is refused, never converted (``enabled: 1`` is not true,
``port: 8080.0`` is not a whole number). Text is accepted where a `${VAR}` may stand for a
number or a switch (the environment only has text): ``"8080"`` for an integer, ``"0.5"`` for a
number, ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0`` (any case) for a switch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
from cattrs import BaseConverter, Converter
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_mapping_structure_fn, override

from picobot.config.fields import Secret
from picobot.core.errors import ConfigError

T = TypeVar("T")
Hook = Callable[[Any, Any], Any]

MAX_PROBLEMS = 5  # listed in one config error; the rest are counted


def structure(data: Any, model: type[T], path: str = "") -> T:
    """`data` as a `model`; `path` is where `data` sits in the config file (for errors).

    :raises ConfigError: naming the key path of each problem (up to `MAX_PROBLEMS`).
    """
    try:
        return _converter.structure(data, model)
    except (BaseValidationError, ConfigError) as exc:
        raise _config_error(list(_problems(exc, (path,) if path else ()))) from None


def _problem(text: str) -> ConfigError:
    return ConfigError("", text)


# The strings pydantic, which read the config before, took for a switch.
_SWITCH = {
    **dict.fromkeys(("true", "yes", "on", "1", "t", "y"), True),
    **dict.fromkeys(("false", "no", "off", "0", "f", "n"), False),
}


def _bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _SWITCH:
        return _SWITCH[value.lower()]
    raise _problem("should be true or false")


def _number(kind: type[int] | type[float], problem: str) -> Hook:
    """`kind` from a number of its own (a float also from an int, neither from a bool) or from
    its text."""
    accepted = int if kind is int else int | float

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, accepted) and not isinstance(value, bool):
            return kind(value)
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
        raise _problem(problem)

    return structure


_int = _number(int, "should be a whole number")
_float = _number(float, "should be a number")


def _str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise _problem("should be text")


def _literal(choices: Any) -> Hook:
    allowed = get_args(choices)
    *first, last = allowed
    expected = f"{', '.join(map(repr, first))} or {last!r}" if first else repr(last)

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, str) and value in allowed:
            return value
        raise _problem(f"should be {expected}")

    return structure


def _list(tuple_type: Any, converter: BaseConverter) -> Hook:
    """``tuple[X, ...]`` from a YAML list (not from a string: its letters are not a list)."""
    item_type = get_args(tuple_type)[0]
    item = converter.get_structure_hook(item_type)

    def structure(value: Any, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _problem("should be a list")
        items, errors = [], []
        for index, element in enumerate(value):
            try:
                items.append(item(element, item_type))
            except Exception as exc:
                exc.add_note(IterableValidationNote(f"item {index}", index, item_type))
                errors.append(exc)
        if errors:
            raise IterableValidationError("invalid items", errors, tuple_type)
        return tuple(items)

    return structure


def _mapping(dict_type: Any, converter: BaseConverter) -> Hook:
    structure_items = make_mapping_structure_fn(dict_type, converter)

    def structure(value: Any, _: Any) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise _problem("should be a mapping of keys to values")
        items: dict[Any, Any] = structure_items(value, dict_type)
        return items

    return structure


def _model(model: type[attrs.AttrsInstance], converter: BaseConverter) -> Hook:
    """A model from a mapping: unknown keys refused; each field's own checks run on its
    value (so that every field's problem is reported, with its path, not the first only)."""
    checked: dict[str, Any] = {
        a.name: override(struct_hook=_checked(a, converter)) for a in attrs.fields(model)
    }
    structure_fields = make_dict_structure_fn(
        model, converter, _cattrs_forbid_extra_keys=True, **checked
    )

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _problem("should be a mapping of keys to values")
        return structure_fields(value, model)

    return structure


def _checked(field: attrs.Attribute[Any], converter: BaseConverter) -> Hook:
    hook = converter.get_structure_hook(field.type)
    convert, validate = field.converter, field.validator
    if convert is None and validate is None:
        return hook

    def structure(value: Any, field_type: Any) -> Any:
        result = hook(value, field_type)
        if callable(convert):
            result = convert(result)
        if validate is not None:
            validate(None, field, result)
        return result

    return structure


def _of(origin: Any) -> Callable[[Any], bool]:
    """A predicate for the types made from `origin` (``tuple[str, ...]`` from `tuple`)."""

    def matches(type_: Any) -> bool:
        made_from: Any = get_origin(type_)
        return bool(made_from is origin)

    return matches


def _new_converter() -> Converter:
    converter = Converter(detailed_validation=True)
    for kind, hook in ((bool, _bool), (int, _int), (float, _float), (str, _str)):
        converter.register_structure_hook(kind, hook)
    converter.register_structure_hook(Path, lambda value, _: Path(_str(value, _)))
    converter.register_structure_hook(Secret, lambda value, _: Secret(_str(value, _)))
    converter.register_structure_hook_factory(_of(Literal), _literal)
    converter.register_structure_hook_factory(_of(tuple), _list)
    converter.register_structure_hook_factory(_of(dict), _mapping)
    converter.register_structure_hook_factory(lambda t: attrs.has(t) and t is not Secret, _model)
    return converter


_converter = _new_converter()


def _problems(exc: BaseException, path: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(dotted key path, problem) for each problem in `exc`, in the order of the models'
    fields (the order of the config reference)."""
    if isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            key = _key_of(sub)
            inner = path if key is None else (*path, key)
            if key is None or isinstance(sub, BaseValidationError):
                yield from _problems(sub, inner)
            elif isinstance(sub, KeyError):
                yield ".".join(inner), "required"
            else:
                yield ".".join(inner), sub.problem if isinstance(sub, ConfigError) else str(sub)
    elif isinstance(exc, ForbiddenExtraKeysError):
        import difflib  # only for a bad config: a daemon that starts never needs it

        known = [a.name for a in attrs.fields(exc.cl)]
        for key in sorted(exc.extra_fields):
            problem = "unknown key"
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            if close:
                problem += f" (did you mean {'.'.join([*path, close[0]])}?)"
            yield ".".join([*path, key]), problem
    elif isinstance(exc, ConfigError):
        # A model's check across its fields names a key of the model, or a whole dotted path.
        within = (exc.path,) if "." in exc.path else (*path, exc.path)
        yield ".".join(filter(None, within)), exc.problem
    else:
        yield ".".join(path), str(exc)


def _key_of(exc: BaseException) -> str | None:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, AttributeValidationNote):
            return note.name
        if isinstance(note, IterableValidationNote):
            return str(note.index)
    return None


def _config_error(problems: list[tuple[str, str]]) -> ConfigError:
    """One error naming up to `MAX_PROBLEMS` problems: the first gives `path`, the others
    follow on the same line as ``; key.path: problem``."""
    shown = problems[:MAX_PROBLEMS]
    path, message = shown[0]
    message += "".join(f"; {p or '(top level)'}: {m}" for p, m in shown[1:])
    more = len(problems) - len(shown)
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(path or "(top level)", message)
