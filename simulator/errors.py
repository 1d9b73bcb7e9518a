"""The error types: bad user input (``SpecError``) and a failed real run (``ExecutorError``).

``SpecError`` is raised anywhere input is validated (topology strings, sizes, collective options). The
command line turns it into a single line on stderr and exit status 2; library users catch it like any
``ValueError``. ``ExecutorError`` (a distributed executor run failed: which rank, why) is one line and
exit status 1.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

if typing.TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic.fields import FieldInfo


class SpecError(ValueError):
    """Invalid user input. The message names the field, the bad value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(one_line(f"{field}: got {value!r}; {allowed}"))


def check_choice(field: str, value: object, allowed: Iterable[object]) -> None:
    """A SpecError naming ``field`` unless ``value`` is one of ``allowed`` (which it lists)."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise SpecError(field, value, f"allowed: {', '.join(map(str, allowed))}")


def check_keys(mapping: Mapping[str, object], allowed: Iterable[str], prefix: str = "") -> None:
    """A SpecError naming ``<prefix><key>`` for the first key of ``mapping`` not in ``allowed``."""
    allowed = tuple(allowed)
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        raise SpecError(f"{prefix}{unknown[0]}", mapping[unknown[0]], f"unknown key; allowed: {', '.join(allowed)}")


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so an error stays on one line (a
    user's key or value may hold any character)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ExecutorError(RuntimeError):
    """A distributed run failed: which rank, and why."""


TORCH_INSTALL = "pip install -e '.[torch]' 'torch==2.13.0'"  # the README's; the pin keeps pip on the CPU build


def torch_missing() -> SpecError:
    """The error of a command that needs the executor's ``torch`` extra where torch does not import."""
    return SpecError("executor", "torch", f"not installed; install the extra (CPU build): {TORCH_INSTALL}")


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
    metadata = list(field.metadata)
    types = []
    for arg in (field.annotation, *typing.get_args(field.annotation)):  # an optional bounded type: T | None
        if typing.get_origin(arg) is typing.Annotated:
            types.append(typing.get_args(arg)[0])
            for meta in arg.__metadata__:
                metadata.extend(getattr(meta, "metadata", [meta]))
        else:
            types.append(arg)
    bounds = {op: getattr(meta, op) for meta in metadata for op in ("gt", "ge", "lt", "le")
              if getattr(meta, op, None) is not None}
    if not bounds:
        return ""
    kind = "an integer" if int in types else "a number"
    if set(bounds) == {"ge", "le"} and kind == "an integer":
        return f"{bounds['ge']:,} to {bounds['le']:,}"
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return f"{kind} " + " and ".join(f"{signs[op]} {value:g}" for op, value in bounds.items())


def field_at(model: type | None, loc: tuple) -> FieldInfo | None:
    """The declaration a pydantic error's ``loc`` points at, walking nested models and lists of them (None
    where the path leaves declared fields)."""
    owner = owner_at(model, loc)
    names = [part for part in loc if not isinstance(part, int)]
    return owner.model_fields.get(names[-1]) if owner is not None and names else None


def owner_at(model: type | None, loc: tuple) -> Any:
    """The model whose field the last named part of ``loc`` is (the one an unknown or missing field belongs
    to), walking nested models and lists of them; None where the path leaves declared fields."""
    names = [part for part in loc if not isinstance(part, int)]
    keyed = False  # the part before was a mapping of models: this part is one of its keys
    for part in names[:-1]:
        if keyed:
            keyed = False
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        annotation = fields[part].annotation
        args = [annotation, *typing.get_args(annotation)]
        args += [inner for arg in args for inner in typing.get_args(arg)]
        models = [arg for arg in args if hasattr(arg, "model_fields")]
        model = models[0] if models else None
        keyed = any(typing.get_origin(arg) is dict for arg in args)
    return None if keyed or not hasattr(model, "model_fields") else model


def location(loc: tuple) -> str:
    """A pydantic error's ``loc`` as the user wrote it: ``jobs[0].steps``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def from_validation(exc: ValidationError, model: type | None, prefix: str = "", default: str = "input",
                    noun: str = "field", label: Callable[[tuple], str] = location) -> SpecError:
    """The first error of validating ``model`` as one SpecError line, the one way every spec reads a pydantic
    error: ``<prefix><where>: got <value>; allowed: ...``. ``where`` is ``label(loc)`` (``default`` at the top),
    and what is allowed is the declared choices or range, the fields of an unknown or missing ``noun``, or a
    validator's own SpecError (kept whole, under ``where``). An unknown key comes first (a misspelt key is also a
    missing one), with the others unknown beside it."""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc, kind, ctx, value = tuple(err["loc"]), err["type"], err.get("ctx", {}), err.get("input")
    where = prefix + (label(loc) or default)
    inner = ctx.get("error")
    if isinstance(inner, SpecError):
        return SpecError(f"{where}.{inner.field}" if loc else prefix + inner.field, inner.value, inner.allowed)
    owner = owner_at(model, loc)
    if kind == "extra_forbidden" and owner is not None:
        others = [str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden" and e is not err
                  and tuple(e["loc"][:-1]) == loc[:-1]]
        also = f" (unknown too: {', '.join(others)})" if others else ""
        keys = [key for key in owner.model_fields if key not in getattr(owner, "refused_keys", ())]
        allowed = f"unknown {noun}{also}; allowed: {', '.join(keys)}"
    elif kind == "missing" and owner is not None:
        required = [name for name, field in owner.model_fields.items() if field.is_required()]
        value, allowed = None, f"required; required {noun}s: {', '.join(required)}"
    elif kind == "too_short":
        allowed = f"allowed: at least {ctx.get('min_length', 1)} item(s)"
    else:
        allowed = allowed_text(err, field_at(model, loc))
    return SpecError(where, value, " ".join(allowed.split()))


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
