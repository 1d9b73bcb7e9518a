"""The error types: bad user input (``SpecError``) and a failed real run (``ExecutorError``).

``SpecError`` is raised anywhere input is validated (topology strings, sizes, collective options). The
command line turns it into a single line on stderr and exit status 2; library users catch it like any
``ValueError``. ``ExecutorError`` (a distributed executor run failed: which rank, why) is one line and
exit status 1.
"""

from pathlib import Path


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
