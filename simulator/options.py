"""Options of a run that are plain data: the strategies' option models and the run's limits.

A leaf module (pydantic only), so the run specification (``runspec``) and the command line can declare
every option without importing the simulator's machinery. Each field's ``description`` is its help text;
``json_schema_extra={"key": ...}`` gives its flat key where the field's name alone would be ambiguous
(``ps.mode`` is ``ps_mode``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_STEPS = 1_000  # steps simulated in one run (enough for staleness to settle; more only takes longer)
# Completions within this fraction of a flow's age share one rate recomputation (``network.fluid``).
DEFAULT_RATE_TOLERANCE = 1e-3
COARSE_RATE_TOLERANCE = 1e-2  # --fidelity auto's flow level when the default's would not fit the budget
MAX_RATE_TOLERANCE = 0.1
DEFAULT_BUDGET_S = 60.0  # --fidelity auto: the most wall seconds flow level may take (``run.fidelity``)
MAX_BUDGET_S = 86_400.0
PARTIALS = ("fields", "first-layer", "auto")  # DES's partial sums (``strategies.des``)
NetworkModelName = Literal["maxmin", "cm02", "lv08"]  # how flows share links (``network.models.MODELS``)
Precision = Literal["fp32", "tf32", "bf16", "fp16"]  # the GEMMs' dtype (``workloads.precision``)
CommDtype = Literal["fp32", "bf16", "fp16"]  # the wire's dtype (``workloads.precision``)
DEFAULT_NETWORK_MODEL: NetworkModelName = "maxmin"
EcmpName = Literal["hash", "dmodk"]  # how a multi-way hop picks its next hop (``network.fabric.Fabric``)


class PSOptions(BaseModel):
    """``mode``: sync (BSP), async (ASP) or ssp (bounded staleness ``staleness``); ``dense``: ps | allreduce;
    ``server_threads`` (async/ssp): requests a server handles at once, first come first served (None: every
    worker's at once; 1: a single-threaded server, as the executor's)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["sync", "async", "ssp"] = Field("sync", description="ps: sync | async | ssp",
                                                  json_schema_extra={"key": "ps_mode"})
    staleness: int = Field(1, ge=0, description="ps --ps-mode ssp: staleness bound, in steps")
    dense: Literal["ps", "allreduce"] = Field("ps", description="ps: dense parameters on the servers (ps) or "
                                                                "all-reduced")
    server_threads: int | None = Field(None, ge=1, le=1_000_000, description=(
        "ps async/ssp: requests a server handles at once, first come first served (default: all)"))


class DESOptions(BaseModel):
    """``input``: gathered (IDs exchanged: all-gathered, or sent to owners for ``des-a2a``) or replicated
    (every worker reads the global batch's IDs itself). ``partial``: what is summed across owners (module
    doc): fields, first-layer, or auto (the fewer values per sample)."""

    model_config = ConfigDict(extra="forbid")
    input: Literal["gathered", "replicated"] = Field(
        "gathered", description="des: gathered (all-gather IDs) | replicated input",
        json_schema_extra={"key": "des_input"})
    partial: Literal["fields", "first-layer", "auto"] = Field(
        "auto", description="des: what owners sum: fields (pooled vectors) | first-layer (the first dense layer's "
                            "partial) | auto (fewer values per sample)", json_schema_extra={"key": "des_partial"})


class ShardingOptions(BaseModel):
    """``column_shards``: column blocks per table for ``cw``."""

    model_config = ConfigDict(extra="forbid")
    column_shards: int = Field(4, ge=1, description="cw: column blocks per table")


class FCOptions(BaseModel):
    """Options of the extreme-classification strategies (each used where it applies).

    ``knn_k``: neighbours per class (``mp-fc-knn``), 1 to C - 1. ``knn_rebuild_steps``: T, steps between
    rebuilds of the neighbour graph. ``knn_candidates``: classes compared per class in a rebuild (an
    approximate index such as IVF compares a few thousand; None: all C, brute force). ``overlap``:
    bucketed backbone gradient reduction overlapping backward.
    ``bucket_bytes``: bucket size on the wire. ``topk_ratio``: fraction of backbone gradient values sent
    (0 < r <= 1; 1 sends all, by all-reduce). ``fp16_comm``: features, gradients and weights travel in 2
    bytes per value, as the workload's ``comm_dtype: fp16`` (``wire_bytes``).
    """

    model_config = ConfigDict(extra="forbid")
    knn_k: int = Field(10, ge=1, description="mp-fc-knn: neighbours scored per label (1 to classes - 1)")
    knn_rebuild_steps: int = Field(1000, ge=1, description="mp-fc-knn: steps between rebuilds of the class-neighbour "
                                                           "graph")
    knn_candidates: int | None = Field(None, ge=1, description="mp-fc-knn: classes compared per class in a rebuild "
                                                               "(default: all, brute force)")
    overlap: bool = Field(False, description="*-fc: bucketed backbone gradient reduction overlapping backward")
    bucket_bytes: float = Field(25e6, gt=0, allow_inf_nan=False, description="*-fc --overlap: bucket size on the "
                                                                             "wire, bytes")
    topk_ratio: float = Field(1.0, gt=0, le=1, allow_inf_nan=False, description=(
        "*-fc: fraction of backbone gradient values sent, 0 < r <= 1 (1: dense all-reduce)"))
    fp16_comm: bool = Field(False, description="*-fc: features, gradients and weights travel as fp16 (as "
                                               "--comm-dtype fp16)")


@dataclass
class StrategyOptions:
    """Options of every strategy, each used by the strategies it concerns."""

    ps: PSOptions
    des: DESOptions
    sharding: ShardingOptions
    fc: FCOptions = field(default_factory=FCOptions)

    @staticmethod
    def default() -> StrategyOptions:
        return StrategyOptions(PSOptions(), DESOptions(), ShardingOptions())
