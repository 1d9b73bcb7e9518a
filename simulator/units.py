"""Unit conventions and parsing of human-written sizes.

Names carry their units: ``*_gbps`` is 1e9 bits/s, ``*_us`` microseconds, ``*_bytes`` bytes, ``*_s``
seconds. Internally the simulator works in bytes and seconds, so bandwidths become bytes/s (``*_Bps``).
"""

import re

from simulator.errors import SpecError

_SIZE_UNITS = {
    "": 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


#: The unit each name suffix stands for (docs/ARCHITECTURE.md, "Names carry units"); the first match counts.
SUFFIX_UNITS = {"_gbps": "Gb/s", "_GBps": "GB/s", "_Bps": "bytes/s", "_tflops": "TFLOP/s", "_bytes": "bytes",
                "_us": "µs", "_ns": "ns", "_per_s": "per s", "_s": "s"}


def unit_of(name: str) -> str:
    """The unit a name's suffix gives it, ``""`` for none.

    >>> unit_of("link_gbps"), unit_of("budget_s"), unit_of("latency_us"), unit_of("workers")
    ('Gb/s', 's', 'µs', '')
    """
    return next((unit for suffix, unit in SUFFIX_UNITS.items() if name.endswith(suffix)), "")


def gbps_to_Bps(link_gbps: float) -> float:
    """Convert 1e9 bits/s to bytes/s."""
    return link_gbps * 1e9 / 8.0


def us_to_s(latency_us: float) -> float:
    """Convert microseconds to seconds."""
    return latency_us * 1e-6


def parse_size_bytes(text: str | int | float, field: str = "size") -> int:
    """Parse ``64MiB``, ``4KB`` (KB=1000, KiB=1024), ``1e9`` or a plain number into a positive byte count.

    >>> parse_size_bytes("64MiB")
    67108864
    >>> parse_size_bytes("4KB")
    4000
    """
    if isinstance(text, bool):
        raise SpecError(field, text, "expected a size such as 64MiB, 4KB or 1e9")
    if isinstance(text, int | float):
        value, unit = float(text), ""
    else:
        match = _SIZE_RE.match(str(text))
        if not match or match.group(2).upper() not in _SIZE_UNITS:
            raise SpecError(field, text, "expected a size such as 64MiB, 4KB (1000), 4KiB (1024) or 1e9 bytes")
        value, unit = float(match.group(1)), match.group(2).upper()
    size = value * _SIZE_UNITS[unit]
    if not size > 0 or size != size:
        raise SpecError(field, text, "a size must be a positive number of bytes")
    return round(size)


def format_bytes(n_bytes: float, digits: str = ".3g") -> str:
    """A size in decimal units for people (``digits`` formats the number):

    >>> format_bytes(93.4e9), format_bytes(80e9, ".1f"), format_bytes(512)
    ('93.4 GB', '80.0 GB', '512 B')
    """
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n_bytes) >= scale:
            return f"{n_bytes / scale:{digits}} {unit}"
    return f"{n_bytes:.0f} B"


_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")
RANGES_ALLOWED = "allowed: a, a-b, a-b:stride, comma-separated such ranges, or a list of integers"


def parse_ranges(value: object, upper: int, what: str = "index") -> list[int]:
    """Sorted distinct integers in [0, ``upper``) from ``a-b`` (inclusive), ``a-b:stride``, ``a``,
    comma-separated such ranges, an int or a list of ints; a ValueError says what is wrong (``what``: one
    item's name in its messages).

    >>> parse_ranges("0-6:2,9", 16), parse_ranges([5, 3], 8)
    ([0, 2, 4, 6, 9], [3, 5])
    """
    if isinstance(value, bool) or not isinstance(value, str | int | list):
        raise ValueError(RANGES_ALLOWED)
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, list):
        if not value or any(isinstance(h, bool) or not isinstance(h, int) for h in value):
            raise ValueError(f"{RANGES_ALLOWED} (a non-empty list of integers)")
        items = list(value)
    else:
        items = []
        for part in value.replace(" ", "").split(","):
            match = _RANGE.match(part)
            if not match:
                raise ValueError(f"cannot read {part!r}; {RANGES_ALLOWED}")
            first, last, stride = (int(g) if g is not None else None for g in match.groups())
            last = first if last is None else last
            if last < first or stride == 0:
                raise ValueError(f"{part!r}: {RANGES_ALLOWED}, with a <= b and stride >= 1")
            if last >= upper:
                raise ValueError(f"{part!r}: each {what} must be 0 to {upper - 1:,}")
            items += range(first, last + 1, stride or 1)
    if min(items) < 0 or max(items) >= upper:
        raise ValueError(f"each {what} must be 0 to {upper - 1:,}")
    if len(set(items)) != len(items):
        raise ValueError(f"an {what} is listed twice" if what[0] in "aeiou" else f"a {what} is listed twice")
    return sorted(items)
