"""Model builders: keyword-only functions returning a validated :class:`~workloads.spec.Workload`.

Every builder names its tables ``t0, t1, ...`` (one per sparse field), sets ``params_per_id`` with
:func:`~workloads.spec.params_per_id_for` and takes ``rows`` as one count for every table or a list (one
per table; then ``n_tables`` may be left out). Parameters are validated by a pydantic model derived from
the signature (``PARAMS[name]``); bad input raises one SpecError line naming ``<builder>.<param>``.

Defaults are Criteo-like: 26 categorical fields plus 13 dense features, or 39 sparse fields where the 13
dense features are bucketized (the usual FM/DeepFM/LR setup); 1e7..1e8 rows per hashed field. DLRM follows
MLPerf Training DLRM on Criteo Terabyte.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from simulator.errors import SpecError
from workloads.spec import Count, NonNegInt, PosFloat, Workload, params_per_id_for, spec_error, validate_workload

#: Rows of the 26 Criteo Terabyte tables (features C1..C26, days 0-23) as used by MLPerf Training/Inference
#: DLRM with ``--max-ind-range=40000000`` (each table hashed to at most 40M rows); 187,767,399 rows in all.
#: Source: the MLPerf DLRM reference (``ln_emb``), also TensorFlow Model Garden's DLRM ``vocab_sizes``.
MLPERF_CRITEO_TB_ROWS: tuple[int, ...] = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10, 2208, 11938, 155, 4,
    976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)

Rows = Count | tuple[Count, ...]
Layers = tuple[Count, ...]
Popularity = Literal["uniform", "zipf"]
DtypeBytes = Literal[2, 4, 8]
IdBytes = Literal[4, 8]
Optimizer = Literal["sgd", "adagrad", "adam"]
IdsMode = Literal["expected", "sampled"]
Name = Annotated[str, Field(min_length=1)]

MODELS: dict[str, Callable[..., Workload]] = {}
PARAMS: dict[str, type[BaseModel]] = {}


def _builder(func: Callable[..., Workload]) -> Callable[..., Workload]:
    """Register ``func`` in MODELS, derive its parameter model and validate every call through it."""
    name = func.__name__
    hints = typing.get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {key: (hints[key], p.default) for key, p in inspect.signature(func).parameters.items()}
    PARAMS[name] = create_model(f"{name.capitalize()}Params", __config__=ConfigDict(extra="forbid"), **fields)

    @functools.wraps(func)
    def build(**params: Any) -> Workload:
        try:
            checked = PARAMS[name](**params)
        except ValidationError as exc:
            raise spec_error(exc, prefix=f"{name}.", model=PARAMS[name]) from None
        return func(**{key: getattr(checked, key) for key in fields})

    MODELS[name] = build
    return build


def _tables(model: str, n_tables: int | None, rows: int | tuple[int, ...], dim: int, hotness: int, popularity: str,
            zipf_alpha: float, default_tables: int) -> list[dict[str, Any]]:
    """Table mappings ``t0..``: ``rows`` per table (one count, or a list that fixes the table count)."""
    if isinstance(rows, tuple):
        if n_tables is not None and n_tables != len(rows):
            raise SpecError(f"{model}.n_tables", n_tables, f"allowed: {len(rows)} (the length of rows) or unset")
        counts = list(rows)
    else:
        counts = [rows] * (n_tables or default_tables)
    return [{"name": f"t{i}", "rows": r, "dim": dim, "params_per_id": params_per_id_for(model, dim),
             "hotness": hotness, "popularity": popularity, "zipf_alpha": zipf_alpha} for i, r in enumerate(counts)]


def _workload(model: str, name: str, tables: list[dict[str, Any]], interaction: str, **rest: Any) -> Workload:
    for key in ("bottom_mlp", "top_mlp"):
        if key in rest:
            rest[key] = list(rest[key])
    return validate_workload({"name": name, "model": model, "tables": tables, "interaction": interaction, **rest})


@_builder
def lr(*, n_tables: Count | None = 39, rows: Rows = 100_000_000, hotness: Count = 1, popularity: Popularity = "uniform",
       zipf_alpha: PosFloat = 1.05, dense_features: NonNegInt = 0, batch_per_worker: Count = 4096,
       dtype_bytes: DtypeBytes = 4, id_bytes: IdBytes = 8, optimizer: Optimizer = "adagrad", ids: IdsMode = "expected",
       seed: NonNegInt = 0, name: Name = "lr") -> Workload:
    """Logistic regression: one weight per ID (dim 1), a linear term over ``dense_features``, a bias.

    Default: 39 hashed Criteo fields of 1e8 rows (3.9e9 weights, 15.6 GB in fp32).
    """
    return _workload("lr", name, _tables("lr", n_tables, rows, 1, hotness, popularity, zipf_alpha, 39), "none",
                     dense_features=dense_features, batch_per_worker=batch_per_worker, dtype_bytes=dtype_bytes,
                     id_bytes=id_bytes, optimizer=optimizer, ids=ids, seed=seed)


@_builder
def fm(*, n_tables: Count | None = 39, rows: Rows = 10_000_000, dim: Count = 16, hotness: Count = 1,
       popularity: Popularity = "uniform", zipf_alpha: PosFloat = 1.05, batch_per_worker: Count = 4096,
       dtype_bytes: DtypeBytes = 4, id_bytes: IdBytes = 8, optimizer: Optimizer = "adagrad", ids: IdsMode = "expected",
       seed: NonNegInt = 0, name: Name = "fm") -> Workload:
    """Factorization machine: per ID a weight and a k-vector (k+1 values), second-order term by the
    sum-square trick. Default: 39 Criteo fields (dense bucketized) of 1e7 rows, k = 16."""
    return _workload("fm", name, _tables("fm", n_tables, rows, dim, hotness, popularity, zipf_alpha, 39), "fm",
                     batch_per_worker=batch_per_worker, dtype_bytes=dtype_bytes, id_bytes=id_bytes,
                     optimizer=optimizer, ids=ids, seed=seed)


@_builder
def widedeep(*, n_tables: Count | None = 26, rows: Rows = 10_000_000, dim: Count = 32, hotness: Count = 1,
             popularity: Popularity = "uniform", zipf_alpha: PosFloat = 1.05, dense_features: NonNegInt = 13,
             top_mlp: Layers = (1024, 512, 256), batch_per_worker: Count = 4096, dtype_bytes: DtypeBytes = 4,
             id_bytes: IdBytes = 8, optimizer: Optimizer = "adagrad", ids: IdsMode = "expected", seed: NonNegInt = 0,
             name: Name = "widedeep") -> Workload:
    """Wide & Deep: a wide (first-order) weight next to each ID's vector (k+1 values per ID); the deep tower
    reads the concatenated pooled vectors and dense features. Default: 26 Criteo fields of 1e7 rows, k = 32."""
    tables = _tables("widedeep", n_tables, rows, dim, hotness, popularity, zipf_alpha, 26)
    return _workload("widedeep", name, tables, "concat", dense_features=dense_features, top_mlp=top_mlp,
                     batch_per_worker=batch_per_worker, dtype_bytes=dtype_bytes, id_bytes=id_bytes,
                     optimizer=optimizer, ids=ids, seed=seed)


@_builder
def deepfm(*, n_tables: Count | None = 39, rows: Rows = 10_000_000, dim: Count = 16, hotness: Count = 1,
           popularity: Popularity = "uniform", zipf_alpha: PosFloat = 1.05, top_mlp: Layers = (400, 400, 400),
           batch_per_worker: Count = 4096, dtype_bytes: DtypeBytes = 4, id_bytes: IdBytes = 8,
           optimizer: Optimizer = "adagrad", ids: IdsMode = "expected", seed: NonNegInt = 0,
           name: Name = "deepfm") -> Workload:
    """DeepFM: FM (first order + second order) and a deep tower sharing the embeddings (k+1 values per ID).
    Default: 39 Criteo fields of 1e7 rows, k = 16, deep tower 400-400-400 (the DeepFM paper)."""
    tables = _tables("deepfm", n_tables, rows, dim, hotness, popularity, zipf_alpha, 39)
    return _workload("deepfm", name, tables, "fm", top_mlp=top_mlp, batch_per_worker=batch_per_worker,
                     dtype_bytes=dtype_bytes, id_bytes=id_bytes, optimizer=optimizer, ids=ids, seed=seed)


@_builder
def dnn(*, n_tables: Count | None = 26, rows: Rows = 10_000_000, dim: Count = 64, hotness: Count = 1,
        popularity: Popularity = "uniform", zipf_alpha: PosFloat = 1.05, dense_features: NonNegInt = 13,
        bottom_mlp: Layers = (), top_mlp: Layers = (1024, 512, 256), interaction: Literal["concat", "sum"] = "concat",
        batch_per_worker: Count = 4096, dtype_bytes: DtypeBytes = 4, id_bytes: IdBytes = 8,
        optimizer: Optimizer = "adagrad", ids: IdsMode = "expected", seed: NonNegInt = 0,
        name: Name = "dnn") -> Workload:
    """Embedding + MLP: sum-pooled vectors per field, concatenated with the dense features, into an MLP.
    Default: 26 Criteo fields of 1e7 rows, k = 64, MLP 1024-512-256 then 1 logit."""
    tables = _tables("dnn", n_tables, rows, dim, hotness, popularity, zipf_alpha, 26)
    return _workload("dnn", name, tables, interaction, dense_features=dense_features, bottom_mlp=bottom_mlp,
                     top_mlp=top_mlp, batch_per_worker=batch_per_worker, dtype_bytes=dtype_bytes,
                     id_bytes=id_bytes, optimizer=optimizer, ids=ids, seed=seed)


@_builder
def dlrm(*, n_tables: Count | None = None, rows: Rows = MLPERF_CRITEO_TB_ROWS, dim: Count = 128,
         hotness: Count = 1, popularity: Popularity = "uniform", zipf_alpha: PosFloat = 1.05,
         dense_features: NonNegInt = 13, bottom_mlp: Layers | None = None,
         top_mlp: Layers = (1024, 1024, 512, 256, 1), interaction: Literal["dot", "concat"] = "dot",
         batch_per_worker: Count = 2048, dtype_bytes: DtypeBytes = 4, id_bytes: IdBytes = 8,
         optimizer: Optimizer = "sgd", ids: IdsMode = "expected", seed: NonNegInt = 0,
         name: Name = "dlrm") -> Workload:
    """DLRM, defaults from MLPerf Training DLRM on Criteo Terabyte: 26 tables (:data:`MLPERF_CRITEO_TB_ROWS`,
    max-ind-range 40M), k = 128, 13 dense features, bottom MLP 512-256-128 (``bottom_mlp`` unset: 512-256-k),
    dot interaction (27 vectors: 351 pairs + 128 = 479 inputs), top MLP 1024-1024-512-256-1, SGD as the
    reference; 2048 samples per worker (16 workers: the reference's global batch of 32768).

    With an int ``rows`` and no ``n_tables``: 26 tables of that many rows.
    """
    if bottom_mlp is None:
        bottom_mlp = (512, 256, dim) if dense_features else ()
    tables = _tables("dlrm", n_tables, rows, dim, hotness, popularity, zipf_alpha, 26)
    return _workload("dlrm", name, tables, interaction, dense_features=dense_features, bottom_mlp=bottom_mlp,
                     top_mlp=top_mlp, batch_per_worker=batch_per_worker, dtype_bytes=dtype_bytes,
                     id_bytes=id_bytes, optimizer=optimizer, ids=ids, seed=seed)


@_builder
def dcn(*, n_tables: Count | None = 26, rows: Rows = 10_000_000, dim: Count = 16, hotness: Count = 1,
        popularity: Popularity = "uniform", zipf_alpha: PosFloat = 1.05, dense_features: NonNegInt = 13,
        cross_layers: NonNegInt = 6, top_mlp: Layers = (1024, 1024), batch_per_worker: Count = 4096,
        dtype_bytes: DtypeBytes = 4, id_bytes: IdBytes = 8, optimizer: Optimizer = "adagrad",
        ids: IdsMode = "expected", seed: NonNegInt = 0, name: Name = "dcn") -> Workload:
    """Deep & Cross Network (v1): x0 = [pooled vectors, dense features] of width d; 6 cross layers (2d
    parameters each) and a deep tower 1024-1024 in parallel; the output layer reads both (the DCN paper's
    best Criteo setting). Default: 26 Criteo fields of 1e7 rows, k = 16."""
    tables = _tables("dcn", n_tables, rows, dim, hotness, popularity, zipf_alpha, 26)
    return _workload("dcn", name, tables, "cross", dense_features=dense_features, cross_layers=cross_layers,
                     top_mlp=top_mlp, batch_per_worker=batch_per_worker, dtype_bytes=dtype_bytes,
                     id_bytes=id_bytes, optimizer=optimizer, ids=ids, seed=seed)
