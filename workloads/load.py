"""Turn a workload string into a validated Workload: preset name, YAML/JSON file, or inline builder.

Inline strings are ``builder:key=value,key=value`` (``dlrm:batch=2048,dim=64``); a bare builder name uses
its defaults. Keys that are builder parameters (aliases ``batch``, ``vocab``, ``alpha``) go to the builder;
any other key is applied afterwards as a ``--set`` override (``dlrm:tables.t0.rows=1000``). Values follow
YAML scalar rules; lists may be given in brackets (``dnn:top_mlp=[512,256]``).

Preset and workload files (YAML or JSON) are either a builder call::

    description: MLPerf DLRM on Criteo Terabyte   # optional
    builder: dlrm
    params: {dim: 128, batch_per_worker: 2048}    # keyword arguments of workloads.models.dlrm

or a full Workload mapping (``name``, ``model``, ``tables: [...]``, ``interaction``, ... and an optional
``description``). Every problem raises one SpecError line naming the field, the bad value and what is
allowed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from simulator.errors import SpecError, check_keys, read_text
from workloads.classification import ClassificationWorkload
from workloads.models import MODELS, PARAMS
from workloads.spec import Workload, apply_overrides, parse_scalar, validate_workload

PRESET_DIR = Path(__file__).parent / "presets"
FILE_SUFFIXES = (".yaml", ".yml", ".json")
PRESET_KEYS = ("builder", "params", "description")
#: Short names accepted for builder parameters in inline strings.
INLINE_ALIASES = {"batch": "batch_per_worker", "vocab": "rows", "alpha": "zipf_alpha"}


def list_presets() -> list[str]:
    """Names of the YAML presets shipped in ``workloads/presets``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _allowed() -> str:
    return (f"allowed: a preset ({', '.join(list_presets())}), a builder ({', '.join(MODELS)}) "
            "optionally with :key=value,..., or a .yaml/.yml/.json file")


def build(builder: str, /, **params: Any) -> Workload | ClassificationWorkload:
    """Workload from ``builder`` (a MODELS name) and its keyword parameters (SpecError on bad names or values)."""
    if builder not in MODELS:
        raise SpecError("workload", builder, _allowed())
    return MODELS[builder](**params)


def _split_items(text: str) -> list[str]:
    """Split on commas outside brackets: ``"a=1,b=[2,3]"`` -> ``["a=1", "b=[2,3]"]``."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def parse_inline(text: str) -> tuple[str, dict[str, Any], list[str]]:
    """Split ``"dlrm:batch=2048,tables.t0.rows=10"`` into the builder name, builder keyword parameters
    (aliases resolved, values parsed) and the remaining items as ``key=value`` overrides.

    >>> parse_inline("dlrm:batch=2048,dim=64,tables.t0.rows=10")
    ('dlrm', {'batch_per_worker': 2048, 'dim': 64}, ['tables.t0.rows=10'])
    """
    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in MODELS:
        raise SpecError("workload", text if name == "" else name, _allowed())
    params: dict[str, Any] = {}
    overrides: list[str] = []
    for item in _split_items(rest):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not (eq and key):
            raise SpecError("workload", text, f"malformed parameter {item!r}; expected builder:key=value,... "
                            "such as dlrm:batch=2048,dim=64")
        key = INLINE_ALIASES.get(key, key)
        if key in PARAMS[name].model_fields:
            if key in params:
                raise SpecError(f"{name}.{key}", value, "given more than once")
            params[key] = parse_scalar(value, "workload", item)
        else:
            overrides.append(f"{key}={value}")
    return name, params, overrides


def load_workload(spec: str | Path, overrides: Iterable[str] | None = None) -> Workload | ClassificationWorkload:
    """A validated Workload from a preset name, an inline builder string, a bare builder name or a file,
    with ``key=value`` overrides (:func:`~workloads.spec.apply_overrides`) applied last.

    >>> load_workload("dlrm-criteo-tb").partial_width
    3328
    >>> load_workload("dlrm:batch=512,dim=64", ["hotness=4"]).ids_per_sample
    104
    """
    text = str(spec).strip()
    path = Path(text)
    if path.suffix.lower() in FILE_SUFFIXES or "/" in text or "\\" in text:
        workload = load_file(path)
    elif ":" in text or text in MODELS:
        name, params, inline_overrides = parse_inline(text)
        params.setdefault("name", text.rstrip(":"))
        workload = override(build(name, **params), inline_overrides, where="workload")
    elif text in list_presets():
        workload = load_file(PRESET_DIR / f"{text}.yaml", name=text)
    else:
        raise SpecError("workload", text, _allowed())
    return override(workload, overrides) if overrides else workload


def override(workload: Workload | ClassificationWorkload, overrides: Iterable[str],
             where: str = "set") -> Workload | ClassificationWorkload:
    """``key=value`` overrides applied: :func:`~workloads.spec.apply_overrides` for a recommender, field by
    field (aliases such as ``batch``) for a classification workload."""
    if not isinstance(workload, ClassificationWorkload):
        return apply_overrides(workload, overrides, where)
    changes: dict[str, Any] = {}
    for item in overrides:
        key, eq, text = (part.strip() for part in str(item).partition("="))
        if not (eq and key):
            raise SpecError(where, item, f"expected key=value; keys: {', '.join(ClassificationWorkload.model_fields)}")
        changes[INLINE_ALIASES.get(key, key)] = parse_scalar(text, where, str(item))
    return workload.with_overrides(changes) if changes else workload


def load_file(path: Path, name: str | None = None) -> Workload | ClassificationWorkload:
    """Load a builder-call or full-Workload YAML/JSON file; ``name`` defaults to the file's stem."""
    source = str(path)
    content = read_text(path, "workload")
    try:
        doc = json.loads(content) if path.suffix.lower() == ".json" else yaml.safe_load(content)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError("workload", source, f"invalid {path.suffix or 'YAML'} file: {' '.join(str(exc).split())}"
                        ) from None
    if not isinstance(doc, dict):
        raise SpecError("workload", source, "allowed: a mapping with builder + params, or Workload fields")
    name = name or path.stem
    if "builder" in doc:
        check_keys(doc, PRESET_KEYS, f"{source}:")
        params = doc.get("params") or {}
        if not isinstance(params, dict):
            raise SpecError(f"{source}:params", params, "allowed: a mapping of builder parameters")
        params = {INLINE_ALIASES.get(key, key): value for key, value in params.items()}
        params.setdefault("name", name)
        return build(str(doc["builder"]), **params)
    doc = {key: value for key, value in doc.items() if key != "description"}
    doc.setdefault("name", name)
    return validate_workload(doc, prefix=f"{source}:")
