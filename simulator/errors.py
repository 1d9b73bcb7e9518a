"""The error types: bad user input (``SpecError``) and a failed real run (``ExecutorError``).

``SpecError`` is raised anywhere input is validated (topology strings, sizes, collective options). The
command line turns it into a single line on stderr and exit status 2; library users catch it like any
``ValueError``. ``ExecutorError`` (a distributed executor run failed: which rank, why) is one line and
exit status 1.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal

if typing.TYPE_CHECKING:
    from pydantic.fields import FieldInfo


class SpecError(ValueError):
    """Invalid user input. The message names the field, the bad value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(one_line(f"{field}: got {value!r}; {allowed}"))


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so an error stays on one line (a
    user's key or value may hold any character)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ExecutorError(RuntimeError):
    """A distributed run failed: which rank, and why."""


def read_text(path: Path, field: str) -> str:
    """The text of a user's file, or a SpecError naming ``field`` when it cannot be read."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise SpecError(field, str(path), "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(field, str(path), f"cannot read file: {' '.join(str(exc).split())}") from None


def read_mapping(path: Path, field: str, expected: str) -> dict:
    """A user's YAML (or JSON) file that must hold a mapping; a SpecError naming ``field`` otherwise
    (``expected`` says what the mapping holds)."""
    import yaml

    try:
        doc = yaml.safe_load(read_text(path, field))
    except yaml.YAMLError as exc:
        raise SpecError(field, str(path), f"invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict):
        raise SpecError(field, str(path), f"must be a mapping with {expected}")
    return doc


# ----- how a pydantic validation error reads as "allowed: ..." ------------------------------------------------
_BOUNDS = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"), "less_than": ("<", "lt"),
           "less_than_equal": ("<=", "le")}
_ALLOWED_BY_TYPE = {
    "int_type": "allowed: an integer", "int_parsing": "allowed: an integer", "int_from_float": "allowed: an integer",
    "float_type": "allowed: a number", "float_parsing": "allowed: a number",
    "finite_number": "allowed: a finite number",
    "bool_type": "allowed: true or false", "bool_parsing": "allowed: true or false", "list_type": "allowed: a list",
    "string_type": "allowed: a string", "model_type": "allowed: a mapping", "dict_type": "allowed: a mapping",
}


def choices(field: FieldInfo) -> tuple[str, ...]:
    """The values a Literal field allows (``()`` for other fields)."""
    annotation = field.annotation
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is Literal:
            return tuple(str(value) for value in typing.get_args(arg))
    return ()


def value_range(field: FieldInfo) -> str:
    """What a bounded number field allows: ``an integer >= 1``, ``a number > 0 and <= 1``, ``1 to 1,000``; ``""``
    for a field without bounds."""
    bounds = {op: getattr(meta, op) for meta in field.metadata for op in ("gt", "ge", "lt", "le")
              if getattr(meta, op, None) is not None}
    if not bounds:
        return ""
    kind = "an integer" if int in (field.annotation, *typing.get_args(field.annotation)) else "a number"
    if set(bounds) == {"ge", "le"} and kind == "an integer":
        return f"{bounds['ge']:,} to {bounds['le']:,}"
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return f"{kind} " + " and ".join(f"{signs[op]} {value:g}" for op, value in bounds.items())


def field_at(model: type, loc: tuple) -> FieldInfo | None:
    """The declaration a pydantic error's ``loc`` points at, walking nested models and lists of them (None
    where the path leaves declared fields)."""
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        field = fields[part]
        inner = [a for a in (field.annotation, *typing.get_args(field.annotation)) if hasattr(a, "model_fields")]
        model = inner[0] if inner else None
    return field


def allowed_text(err: dict[str, Any], field: FieldInfo | None = None) -> str:
    """What one pydantic error (``ValidationError.errors()[0]``) says is allowed, in the ``allowed: ...`` form
    every SpecError uses: the field's choices or whole range when its declaration (``field``) is known."""
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "literal_error":
        options = choices(field) if field is not None else ()
        return f"allowed: {', '.join(options) if options else ctx.get('expected', err['msg'])}"
    if kind in _BOUNDS:
        described = value_range(field) if field is not None else ""
        op, key = _BOUNDS[kind]
        return f"allowed: {described or f'{op} {ctx[key]}'}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return _ALLOWED_BY_TYPE.get(kind, err["msg"])
