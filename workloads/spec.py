"""Workload specs: embedding tables plus a recommender model and its training configuration.

A :class:`Workload` is the single source of truth the strategies read: sizes of the sparse part (tables),
of the dense part (MLPs, interaction) and of DES partial results. Conventions, per sample (one training
example), with F = ``n_fields``, k = embedding dim, E = sum over tables of ``fields * dim`` (the width of
all pooled vectors side by side, "F*k" with mixed dims) and D_b = width of the dense vector after the
bottom MLP (``bottom_mlp[-1]``, or ``dense_features`` without a bottom MLP, 0 without dense features):

- each sparse field pools ``hotness`` rows of its table into one vector of ``dim`` values;
- the dense vector joins vector-wise interactions (``sum``, ``dot``, ``fm``) as one more vector, so
  there V = F + 1 when D_b > 0 (DLRM's convention) and D_b must equal k;
- multiply-add counts as 2 FLOPs everywhere (a linear layer in -> out costs 2*in*out FLOPs forward).

Interactions, with their output (the input of the top MLP) and forward FLOPs:

============  ================================================  ==========================================
interaction   top-MLP input width                               interaction FLOPs per sample
============  ================================================  ==========================================
``none``      no top MLP: LR, logit = sum of ID weights +       0 (the linear term is a layer, below)
              linear term over the dense features
``sum``       k (element-wise sum of the V vectors)             V*k
``concat``    E + D_b                                           0
``dot``       V(V-1)/2 + D_b (pairwise dots, no self-dots,      2*V*V*k (batched Gram matrix)
              plus the dense vector: DLRM; MLPerf: 479)
``fm``        E + D_b for the optional deep tower (DeepFM;      3*V*k (square of sum, sum of squares)
              0 without one); the FM second-order scalar
              adds to the logit
``cross``     E + D_b = d; DCN cross layers keep width d and    4*d per cross layer
              have 2*d parameters each (w and b); the deep
              tower (``top_mlp``) reads x0 in parallel
============  ================================================  ==========================================

Linear layers (weights + biases) counted in :attr:`Workload.dense_params`: the bottom MLP
(``dense_features`` -> ``bottom_mlp``); for models with a first-order term (lr, fm, widedeep, deepfm) a
linear term D_b -> 1 (D_b weights + the global bias: LR without dense features has 1 dense parameter);
the top MLP (top-MLP input -> ``top_mlp``); and an output layer to 1 logit, appended unless ``top_mlp``
already ends in 1. ``cross``: the output layer reads [x_L, deep output] (d + ``top_mlp[-1]``). ``fm``
and ``none`` without a top MLP have no output layer (the logit is a sum).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from simulator.errors import SpecError, check_choice, from_validation
from simulator.options import PARTIALS, CommDtype, Precision
from workloads.precision import MixedPrecision, check_precision

ModelName = Literal["lr", "fm", "widedeep", "deepfm", "dnn", "dlrm", "dcn"]
Interaction = Literal["none", "sum", "dot", "concat", "fm", "cross"]

#: Interactions each model accepts (the first is the builders' default).
MODEL_INTERACTIONS: dict[str, tuple[str, ...]] = {
    "lr": ("none",), "fm": ("fm",), "widedeep": ("concat",), "deepfm": ("fm",), "dnn": ("concat", "sum"),
    "dlrm": ("dot", "concat"), "dcn": ("cross",),
}
#: Models with a first-order (LR) term: per-ID weights stored next to the vector, a linear term, a bias.
LINEAR_MODELS = ("lr", "fm", "widedeep", "deepfm")
VECTOR_INTERACTIONS = ("sum", "dot", "fm")
OPTIMIZER_SLOTS = {"sgd": 0, "adagrad": 1, "adam": 2}
_NUMBER = re.compile(r"[+-]?(\d[\d_]*\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number(value: object) -> object:
    """Refuse booleans as numbers; read numeric strings (``"1e10"``, ``"40_000_000"``) as numbers."""
    if isinstance(value, bool):
        raise ValueError("allowed: a number (not true/false)")
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip().replace("_", "")
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    return value


Count = Annotated[int, BeforeValidator(_number), Field(ge=1)]
NonNegInt = Annotated[int, BeforeValidator(_number), Field(ge=0)]
PosFloat = Annotated[float, BeforeValidator(_number), Field(gt=0, allow_inf_nan=False)]


def params_per_id_for(model: str, dim: int) -> int:
    """Values stored per ID of a table of width ``dim``: 1 for LR (one weight), k+1 where the first-order
    weight lives next to the vector (fm, widedeep, deepfm), k otherwise (dnn, dlrm, dcn)."""
    if model == "lr":
        return 1
    return dim + 1 if model in LINEAR_MODELS else dim


class Table(BaseModel):
    """One embedding table (or LR weight vector) and how samples look it up; each field's description says
    what it means and in what unit (``dessim list keys``, docs/KEYS.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the table's name (tables.<name>.<field> sets one table)")
    rows: Count = Field(description="vocabulary size in IDs: IDs 0 to rows - 1 (alias vocab; may be 1e12)")
    dim: Count = Field(description="embedding width k: values per pooled vector (sets params_per_id too)")
    params_per_id: Count = Field(description="values stored per ID: k, 1 for lr, k + 1 for fm, widedeep, deepfm")
    fields: Count = Field(1, description="sparse fields sharing this table")
    hotness: Count = Field(1, description="IDs per sample per field")
    popularity: Literal["uniform", "zipf"] = Field("uniform", description=(
        "the IDs' distribution: uniform, or zipf (P(rank i) proportional to i^-zipf_alpha, ID = rank - 1)"))
    zipf_alpha: PosFloat = Field(1.05, description="Zipf exponent (alias alpha), for popularity zipf")
    pooling: Literal["sum", "mean"] = Field("sum", description="how a field's hotness rows make one vector")
    replacement: bool = Field(True, description="whether one (sample, field)'s IDs may repeat; false needs "
                                                "hotness <= rows")

    @model_validator(mode="after")
    def _hotness_fits(self) -> Table:
        if not self.replacement and self.hotness > self.rows:
            raise SpecError("hotness", self.hotness, f"allowed: <= rows ({self.rows}) when replacement is false")
        return self

    @property
    def lookups_per_sample(self) -> int:
        """IDs one sample looks up in this table: ``fields * hotness``."""
        return self.fields * self.hotness


class Workload(MixedPrecision, BaseModel):
    """A recommender model plus its training configuration; derived sizes are properties (see module doc), and
    each field's description says what it means and in what unit (``dessim list keys``, docs/KEYS.md).
    ``embedding_update`` ``fused``: ``strategies.costs.embedding_backward_s``; ``precision``, ``comm_dtype``:
    ``workloads.precision``; ``ids: sampled``: ``workloads.ids``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the workload's name")
    model: ModelName = Field(description="the model family")
    tables: list[Table] = Field(min_length=1, description="the embedding tables (their fields below)")
    dense_features: NonNegInt = Field(0, description="dense (continuous) input features per sample")
    bottom_mlp: list[Count] = Field([], description="bottom MLP widths in order, such as [512,256,128]; [] for none")
    top_mlp: list[Count] = Field([], description="top MLP widths in order; [] for none")
    interaction: Interaction = Field(description="how the pooled vectors and the dense vector combine (each model "
                                                 "allows some: workloads/spec.py)")
    cross_layers: NonNegInt = Field(0, description="DCN cross layers (interaction cross)")
    batch_per_worker: Count = Field(description="samples per worker per step (alias batch)")
    dtype_bytes: Literal[2, 4, 8] = Field(4, description="bytes per stored value: parameters, gradients, optimizer "
                                                         "state; activations too unless precision is bf16/fp16")
    precision: Precision = Field("fp32", description="the GEMMs' dtype (bf16/fp16: mixed precision)")
    comm_dtype: CommDtype | None = Field(None, description="dtype of values on the wire (default: the activations')")
    id_bytes: Literal[4, 8] = Field(8, description="bytes per ID key on the wire")
    optimizer: Literal["sgd", "adagrad", "adam"] = Field("adagrad", description=(
        "the optimizer; its state per parameter: sgd none, adagrad 1 value, adam 2"))
    embedding_update: Literal["unfused", "fused"] = Field("unfused", description=(
        "on row owners (DES, TorchRec sharding): unfused (a lookup's backward, then the optimizer: PyTorch's sparse "
        "gradients, the executor) | fused (one kernel, FBGEMM's)"))
    ids: Literal["expected", "sampled"] = Field("expected", description=(
        "expected (expected distinct-ID counts) | sampled (IDs drawn, seeded by seed)"))
    seed: NonNegInt = Field(0, description="the seed of sampled IDs")

    @model_validator(mode="after")
    def _consistent(self) -> Workload:
        allowed = MODEL_INTERACTIONS[self.model]
        if self.interaction not in allowed:
            raise SpecError("interaction", self.interaction, f"allowed for {self.model}: {', '.join(allowed)}")
        check_precision(self.precision, self.dtype_bytes)
        names = [t.name for t in self.tables]
        for name in names:
            if names.count(name) > 1:
                raise SpecError("tables.name", name, "allowed: unique table names")
        if self.bottom_mlp and not self.dense_features:
            raise SpecError("bottom_mlp", self.bottom_mlp, "allowed: [] when dense_features is 0")
        if self.cross_layers and self.interaction != "cross":
            raise SpecError("cross_layers", self.cross_layers, "allowed: 0 unless interaction is cross")
        if self.model == "lr":
            for key in ("bottom_mlp", "top_mlp"):
                if getattr(self, key):
                    raise SpecError(key, getattr(self, key), "allowed: [] for lr (a linear model)")
            for t in self.tables:
                if t.dim != 1:
                    raise SpecError(f"tables.{t.name}.dim", t.dim, "allowed: 1 for lr (one weight per ID)")
        for t in self.tables:
            if t.params_per_id < t.dim:
                raise SpecError(f"tables.{t.name}.params_per_id", t.params_per_id,
                                f"allowed: >= dim ({t.dim}); a row stores at least its vector")
        if self.model == "fm" and self.top_mlp:
            raise SpecError("top_mlp", self.top_mlp, "allowed: [] for fm (use deepfm for a deep tower)")
        if self.interaction in VECTOR_INTERACTIONS:
            dims = [t.dim for t in self.tables]
            k = max(dims, key=dims.count)  # the most common dim: report the odd ones out
            for t in self.tables:
                if t.dim != k:
                    raise SpecError(f"tables.{t.name}.dim", t.dim,
                                    f"allowed: {k}, the dim of every table (interaction {self.interaction})")
            if self.bottom_width not in (0, k):
                key = "bottom_mlp" if self.bottom_mlp else "dense_features"
                raise SpecError(key, getattr(self, key), f"allowed: a dense vector of width dim ({k}) for "
                                f"interaction {self.interaction}: end the bottom MLP with {k}")
        return self

    # ----- sparse part -------------------------------------------------------------------------------------
    @property
    def optimizer_slots(self) -> int:
        """Optimizer state values per parameter: sgd 0, adagrad 1, adam 2."""
        return OPTIMIZER_SLOTS[self.optimizer]

    @property
    def n_fields(self) -> int:
        """F: sparse fields (sum of ``table.fields``)."""
        return sum(t.fields for t in self.tables)

    @property
    def ids_per_sample(self) -> int:
        """m: IDs one sample looks up, over all tables (sum of ``fields * hotness``)."""
        return sum(t.fields * t.hotness for t in self.tables)

    @property
    def embedding_lookups_per_sample(self) -> int:
        """Embedding rows gathered per sample (= m, ``ids_per_sample``)."""
        return self.ids_per_sample

    @property
    def embedding_width(self) -> int:
        """E: values of all pooled vectors of one sample side by side (sum of ``fields * dim``; F*k)."""
        return sum(t.fields * t.dim for t in self.tables)

    @property
    def dim(self) -> int:
        """k: the common embedding dim (the largest one if tables differ)."""
        return max(t.dim for t in self.tables)

    @property
    def partial_width(self) -> int:
        """r: values of the DES partial result per sample (docs/TRAINING_MODEL.md): lr 1; fm k+1 (sum v x, plus the
        scalar w x - 1/2 sum v^2 x^2); dnn, dlrm, dcn E = F*k (one pooled vector per field); widedeep and
        deepfm E+1 (the pooled vectors plus the first-order sum)."""
        if self.model == "lr":
            return 1
        if self.model == "fm":
            return self.dim + 1
        return self.embedding_width + (1 if self.model in ("widedeep", "deepfm") else 0)

    @property
    def first_layer_width(self) -> int:
        """h1: outputs of the first dense layer reading the pooled vectors (the top MLP's first layer, or the
        output layer without a top MLP); 0 where no dense layer reads them (``none``, ``fm`` without a deep
        tower)."""
        if self.interaction == "none" or (self.interaction == "fm" and not self.top_mlp):
            return 0
        return self.top_mlp[0] if self.top_mlp else 1

    @property
    def first_layer_input(self) -> int:
        """Embedding values per sample the first dense layer reads: k for ``sum`` (the fields' sum), else E."""
        return self.dim if self.interaction == "sum" else self.embedding_width

    @property
    def first_layer_flops_per_sample(self) -> int:
        """Forward FLOPs per sample of the first dense layer's embedding columns: 2 x ``first_layer_input``
        x h1 (what DES's ``first-layer`` partial moves from the dense forward to the row owners)."""
        return 2 * self.first_layer_input * self.first_layer_width

    @property
    def first_layer_obstacle(self) -> str:
        """Why summing per-worker partials of the first dense layer would not be exact ('' when it is):
        that layer must be linear in every field's pooled vector, and so must whatever else reads them."""
        if not self.first_layer_width:
            return "no dense layer reads the embeddings (the field partial is already the model's linear part)"
        if self.interaction == "dot":
            return "the pairwise dot products are not linear in the embeddings"
        if self.interaction == "cross":
            return "the cross network (x0 x0^T w) is not linear in x0"
        if self.interaction == "fm" and any(t.hotness > 1 for t in self.tables):
            return ("FM's sum of squared field vectors is linear in the owners' partials only with one-hot "
                    "fields (hotness 1)")
        return ""

    @property
    def first_layer_partial_width(self) -> int:
        """r with the first dense layer substituted (TRAINING_MODEL.md): h1, plus k + 1 for DeepFM's FM
        part (the vectors' sum; first-order sum - 1/2 sum of squared field vectors), plus 1 for W&D's
        first-order sum; 0 where that is not exact (``first_layer_obstacle``)."""
        if self.first_layer_obstacle:
            return 0
        return (self.first_layer_width + (self.dim if self.interaction == "fm" else 0)
                + (1 if self.model in LINEAR_MODELS else 0))

    def des_partial(self, partial: str = "auto") -> str:
        """What DES sums for the option ``partial`` (``fields``, ``first-layer`` or ``auto``): ``partial`` itself,
        or for ``auto`` the one with fewer values per sample (fields on a tie, and wherever first-layer is not
        exact). A SpecError naming ``des_partial`` when first-layer is asked for where it is not exact."""
        check_choice("des_partial", partial, PARTIALS)
        obstacle = self.first_layer_obstacle
        if partial == "first-layer" and obstacle:
            raise SpecError("des_partial", partial, f"allowed for {self.model} ({self.interaction}): fields, auto; "
                                                    f"{obstacle}")
        if partial == "auto":
            return "first-layer" if not obstacle and self.first_layer_partial_width < self.partial_width else "fields"
        return partial

    def des_partial_width(self, mode: str) -> int:
        """r, values per sample DES sums, for a resolved ``mode`` (``des_partial``)."""
        return self.first_layer_partial_width if mode == "first-layer" else self.partial_width

    @property
    def pools_in_lookup(self) -> bool:
        """Whether a lookup can sum a sample's rows as it reads them (an embedding bag): not FM's, whose
        second-order term needs each ID's own vector (its |v|^2) before the per-sample sums."""
        return self.model != "fm"

    @property
    def sparse_params(self) -> int:
        """Sparse parameters (values): sum of ``rows * params_per_id`` (an exact Python int)."""
        return sum(t.rows * t.params_per_id for t in self.tables)

    @property
    def sparse_bytes(self) -> int:
        """Bytes of all sparse parameters (without optimizer state): ``sparse_params * dtype_bytes``."""
        return self.sparse_params * self.dtype_bytes

    # ----- dense part --------------------------------------------------------------------------------------
    @property
    def bottom_width(self) -> int:
        """D_b: width of the dense vector entering the interaction (0 without dense features)."""
        return self.bottom_mlp[-1] if self.bottom_mlp else self.dense_features

    @property
    def n_vectors(self) -> int:
        """V: vectors in a vector-wise interaction: F pooled vectors, plus the dense vector if any."""
        return self.n_fields + (1 if self.bottom_width else 0)

    @property
    def interaction_width(self) -> int:
        """Width of the interaction output read by the top MLP (module doc table; 0 for ``none``)."""
        v, concat = self.n_vectors, self.embedding_width + self.bottom_width
        return {"none": 0, "sum": self.dim, "concat": concat, "dot": v * (v - 1) // 2 + self.bottom_width,
                "fm": concat if self.top_mlp else 0, "cross": concat}[self.interaction]

    @property
    def linear_layers(self) -> list[tuple[int, int]]:
        """Every linear layer (in_width, out_width), bottom to output, each with weights and biases."""
        layers: list[tuple[int, int]] = []
        width = self.dense_features
        for out in self.bottom_mlp:
            layers.append((width, out))
            width = out
        if self.model in LINEAR_MODELS:
            layers.append((self.bottom_width, 1))
        width = self.interaction_width
        for out in self.top_mlp:
            layers.append((width, out))
            width = out
        if self.interaction == "cross":
            layers.append((self.interaction_width + (self.top_mlp[-1] if self.top_mlp else 0), 1))
        elif self.interaction == "none" or (self.interaction == "fm" and not self.top_mlp):
            pass  # the logit is a sum: linear term (+ FM term)
        elif not self.top_mlp or self.top_mlp[-1] != 1:
            layers.append((width, 1))
        return layers

    @property
    def cross_params(self) -> int:
        """Parameters of the DCN cross network: ``cross_layers * 2 * d`` (d = E + D_b)."""
        return self.cross_layers * 2 * self.interaction_width if self.interaction == "cross" else 0

    @property
    def dense_params(self) -> int:
        """P_d: dense parameters (replicated on every worker): every linear layer's weights and biases
        (:attr:`linear_layers`) plus the cross network. LR without dense features: 1 (the bias)."""
        return sum(i * o + o for i, o in self.linear_layers) + self.cross_params

    @property
    def interaction_flops_per_sample(self) -> int:
        """Forward FLOPs of the interaction (module doc table)."""
        v, k = self.n_vectors, self.dim
        return {"none": 0, "sum": v * k, "concat": 0, "dot": 2 * v * v * k, "fm": 3 * v * k,
                "cross": 4 * self.interaction_width * self.cross_layers}[self.interaction]

    @property
    def dense_flops_per_sample(self) -> int:
        """Forward FLOPs of the dense part per sample: 2*in*out per linear layer plus the interaction.
        Embedding gathers and pooling are not FLOPs here (they are memory-bound lookups, counted apart)."""
        return sum(2 * i * o for i, o in self.linear_layers) + self.interaction_flops_per_sample

    @property
    def activation_bytes_per_sample(self) -> int:
        """Rough activation memory per sample: (pooled vectors E + interaction output + cross layer outputs
        + every linear layer's output) * ``activation_value_bytes`` * 2 (the forward value and its saved copy /
        gradient)."""
        widths = self.embedding_width + self.interaction_width + sum(o for _, o in self.linear_layers)
        if self.interaction == "cross":
            widths += self.cross_layers * self.interaction_width
        return widths * self.activation_value_bytes * 2


# ----- validation errors as one SpecError line -------------------------------------------------------------
def _table_name(data: Any, index: int) -> str:
    """The name of table ``index`` in raw input ``data`` (a dict or Workload), else ``str(index)``."""
    tables = data.get("tables") if isinstance(data, dict) else getattr(data, "tables", None)
    try:
        table = tables[index]  # type: ignore[index]
        name = table.get("name") if isinstance(table, dict) else table.name
    except (TypeError, IndexError, KeyError, AttributeError):
        return str(index)
    return str(name) if isinstance(name, str) and name else str(index)


def spec_error(exc: ValidationError, data: Any = None, prefix: str = "",
               model: type[BaseModel] | None = None) -> SpecError:
    """Turn the first pydantic error into one SpecError line: ``<prefix><field>: got <value>; allowed: ...``.

    Table positions are shown by name (``tables.t0.dim``) when ``data`` (the raw input) has one. ``model``
    lists the allowed fields for unknown/missing ones (default: Workload, or Table inside ``tables``).
    """
    def label(loc: tuple) -> str:
        named = [_table_name(data, part) if i == 1 and loc[0] == "tables" else str(part) for i, part in enumerate(loc)]
        return ".".join(named)

    return from_validation(exc, model or Workload, prefix=prefix, default="workload", label=label)


def validate_workload(data: Any, prefix: str = "") -> Workload:
    """A Workload from a mapping; any problem raises one SpecError line naming ``<prefix><field>``."""
    try:
        return Workload.model_validate(data)
    except ValidationError as exc:
        raise spec_error(exc, data, prefix) from None


# ----- --set key=value overrides ----------------------------------------------------------------------------
WORKLOAD_ALIASES = {"batch": "batch_per_worker"}
TABLE_ALIASES = {"vocab": "rows", "alpha": "zipf_alpha"}
#: Keys that set one field of every table at once (``--set hotness=8``).
TABLE_KEYS = tuple(key for key in Table.model_fields if key != "name")


def allowed_override_keys() -> str:
    """The keys ``apply_overrides`` accepts, as one line."""
    top = ", ".join(f"{k} (batch)" if k == "batch_per_worker" else k for k in Workload.model_fields)
    aliases = {v: k for k, v in TABLE_ALIASES.items()}
    tables = ", ".join(f"{k} ({aliases[k]})" if k in aliases else k for k in TABLE_KEYS)
    return f"allowed keys: {top}; every table: {tables}; one table: tables.<name>.<field>"


def parse_scalar(text: str, where: str = "set", item: str = "") -> Any:
    """Read an override value with YAML rules: ``8`` -> 8, ``0.5`` -> 0.5, ``false`` -> False, ``[512, 64]`` ->
    a list, ``zipf`` -> ``"zipf"``; numeric strings such as ``1e10`` are read as numbers by the fields."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise SpecError(where, item or text, "the value is not valid YAML (a number, word, true/false or "
                        "[list])") from None


def _set_table_field(data: dict[str, Any], table: dict[str, Any], key: str, value: Any) -> None:
    """Set one raw table field; a new ``dim`` also sets ``params_per_id`` by :func:`params_per_id_for`."""
    table[key] = value
    if key == "dim":
        dim = _number(value) if not isinstance(value, bool) else value
        if isinstance(dim, float) and dim.is_integer():
            dim = int(dim)
        if isinstance(dim, int) and not isinstance(dim, bool):
            table["params_per_id"] = params_per_id_for(str(data.get("model")), dim)


def _assign(data: dict[str, Any], key: str, value: Any, where: str, item: str) -> None:
    key = WORKLOAD_ALIASES.get(key, key)
    if key in Workload.model_fields:
        data[key] = value
        return
    tables = data.get("tables")
    if not (isinstance(tables, list) and all(isinstance(t, dict) for t in tables)):
        tables = []
    table_key = TABLE_ALIASES.get(key, key)
    if table_key in TABLE_KEYS:
        old_dims = {t.get("dim") for t in tables}
        for table in tables:
            _set_table_field(data, table, table_key, value)
        bottom = data.get("bottom_mlp")
        if (table_key == "dim" and data.get("interaction") in VECTOR_INTERACTIONS and isinstance(bottom, list)
                and bottom and len(old_dims) == 1 and bottom[-1] in old_dims):
            data["bottom_mlp"] = [*bottom[:-1], value]
        return
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "tables":
        name, field = parts[1], TABLE_ALIASES.get(parts[2], parts[2])
        table = next((t for t in tables if t.get("name") == name), None)
        if table is None:
            shown = ", ".join(str(t.get("name")) for t in tables[:8]) + (", ..." if len(tables) > 8 else "")
            raise SpecError(where, item, f"unknown table {name!r}; tables: {shown}")
        if field not in Table.model_fields:
            raise SpecError(where, item, f"unknown table field {parts[2]!r}; allowed: {', '.join(Table.model_fields)}")
        _set_table_field(data, table, field, value)
        return
    raise SpecError(where, item, f"unknown key {key!r}; {allowed_override_keys()}")


def apply_overrides(workload: Workload, overrides: Iterable[str] | None, where: str = "set") -> Workload:
    """A new Workload with ``key=value`` overrides applied in order, then validated once.

    Keys: any Workload field (alias ``batch`` for ``batch_per_worker``); a Table field without a table name
    sets it on every table (``dim``, ``rows``/``vocab``, ``hotness``, ``fields`` (fields per table, i.e.
    tables shared by that many fields; the table count never changes), ``popularity``,
    ``zipf_alpha``/``alpha``, ``pooling``, ``replacement``, ``params_per_id``); ``tables.<name>.<field>``
    sets one table. A new ``dim`` also sets ``params_per_id`` (:func:`params_per_id_for`) and, for a
    vector-wise interaction (sum/dot/fm), the last bottom-MLP width when it equalled the old dim. Values
    follow YAML scalar rules. Errors are one SpecError line: a bad key names ``where`` (``set``), a bad value
    names the field (``batch_per_worker: got -3; allowed: >= 1``).
    """
    data = workload.model_dump()
    for item in overrides or []:
        key, eq, text = (part.strip() for part in str(item).partition("="))
        if not (eq and key):
            raise SpecError(where, item, f"expected key=value; {allowed_override_keys()}")
        _assign(data, key, parse_scalar(text, where, str(item)), where, str(item))
    return validate_workload(data)
