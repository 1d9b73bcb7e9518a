"""Extreme-classification workloads: a data-parallel CNN backbone feeding a C-class FC softmax.

The backbone is given by its size, not its layers: forward FLOPs per sample, parameters, and the activation
bytes a sample keeps for backward. The builder adds a projection from the backbone's output width to the
feature dim D (a linear layer, counted in the backbone), then the FC layer: D x C weights, no bias, softmax
over the C classes. Labels are uniform over the classes, drawn with a seeded numpy Generator (the
executor's). Multiply-add counts as 2 FLOPs; the FC forward costs 2 x D x C per sample.

Backbone presets (224 x 224 images, fp32 activations; torchvision's model table for FLOPs and parameters,
the fc layer excluded; activation bytes are estimates, saved tensors for backward):

==========  =================  =============  ============  ======================
backbone    GFLOPs / sample    parameters     output width  activation MB / sample
==========  =================  =============  ============  ======================
resnet50    8.18 (4.09 GMAC)   23.51 M        2048          100
resnet152   23.03 (11.51 GMAC) 58.14 M        2048          230
==========  =================  =============  ============  ======================

>>> w = classification(classes=100_000_000, feature_dim=512, batch_per_worker=32)
>>> w.fc_params, round(w.backbone_params / 1e6, 2)
(51200000000, 24.56)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from simulator.errors import SpecError
from simulator.options import CommDtype, Precision
from workloads.models import _builder
from workloads.precision import MixedPrecision, check_precision
from workloads.spec import Count, NonNegInt, PosFloat, _number, spec_error

#: Backbone presets: forward FLOPs per sample, parameters (without the classifier), output width, activation
#: bytes kept per sample (fp32).
BACKBONES: dict[str, dict[str, float]] = {
    "resnet50": {"flops": 8.18e9, "params": 23_508_032, "width": 2048, "activation_bytes": 100e6},
    "resnet152": {"flops": 23.03e9, "params": 58_143_810, "width": 2048, "activation_bytes": 230e6},
}
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adagrad": 1, "adam": 2}
MAX_CLASSES = 10 ** 12
Classes = Annotated[int, BeforeValidator(_number), Field(ge=2, le=MAX_CLASSES)]


class ClassificationWorkload(MixedPrecision, BaseModel):
    """A backbone plus a ``classes``-way FC softmax and its training configuration (see module doc); each field's
    description says what it means and in what unit (``dessim list keys``, docs/KEYS.md). ``precision``,
    ``comm_dtype``: ``workloads.precision``. Constructing one with a bad field raises one SpecError line.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="the workload's name")
    model: Literal["classification"] = Field("classification", description="the model family")
    backbone: str = Field("custom", min_length=1, description="the backbone preset (resnet50, resnet152) or custom")
    backbone_flops_per_sample: PosFloat = Field(description="the backbone's forward FLOPs per sample, projection "
                                                            "included")
    backbone_params: Count = Field(description="the backbone's parameters, projection included")
    backbone_activation_bytes_per_sample: float = Field(0.0, ge=0, allow_inf_nan=False, description=(
        "bytes of activations kept per sample for backward, at dtype_bytes"))
    feature_dim: Count = Field(description="D, the FC layer's input width (values per sample)")
    classes: Classes = Field(description="C, the softmax's classes")
    batch_per_worker: Count = Field(description="samples per worker per step (alias batch)")
    dtype_bytes: Literal[2, 4] = Field(4, description="bytes per stored value: weights, gradients, optimizer state, "
                                                      "logits; activations too unless precision is bf16/fp16")
    precision: Precision = Field("fp32", description="the GEMMs' dtype (bf16/fp16: mixed precision)")
    comm_dtype: CommDtype | None = Field(None, description="dtype of values on the wire (default: the activations')")
    optimizer: Literal["sgd", "momentum", "adagrad", "adam"] = Field("momentum", description=(
        "the optimizer; its state per parameter: sgd none, momentum and adagrad 1 value, adam 2"))
    seed: NonNegInt = Field(0, description="the seed of the labels")

    def __init__(self, **data: object) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise spec_error(exc, data, prefix="classification.", model=ClassificationWorkload) from None
        try:
            check_precision(self.precision, self.dtype_bytes)
        except SpecError as exc:
            raise SpecError(f"classification.{exc.field}", exc.value, exc.allowed) from None

    @property
    def activation_bytes_per_sample(self) -> float:
        """Backbone activation bytes kept per sample at the activations' dtype (``activation_value_bytes``)."""
        return self.backbone_activation_bytes_per_sample * self.activation_value_bytes / self.dtype_bytes

    @property
    def optimizer_slots(self) -> int:
        """Optimizer state values per parameter: sgd 0, momentum 1, adagrad 1, adam 2."""
        return OPTIMIZER_SLOTS[self.optimizer]

    @property
    def fc_params(self) -> int:
        """Weights of the FC layer: D x C."""
        return self.feature_dim * self.classes

    @property
    def fc_bytes(self) -> int:
        """Bytes of the FC weights, stored: ``fc_params x dtype_bytes``."""
        return self.fc_params * self.dtype_bytes

    @property
    def backbone_bytes(self) -> int:
        """Bytes of the backbone's weights, stored: ``backbone_params x dtype_bytes``."""
        return self.backbone_params * self.dtype_bytes

    def with_overrides(self, changes: dict[str, object]) -> ClassificationWorkload:
        """A new workload with ``changes`` (field -> value) applied and validated."""
        unknown = [key for key in changes if key not in type(self).model_fields]
        if unknown:
            raise SpecError(f"classification.{unknown[0]}", changes[unknown[0]],
                            f"unknown field; allowed: {', '.join(type(self).model_fields)}")
        return ClassificationWorkload(**{**self.model_dump(), **changes})


Backbone = Literal["resnet50", "resnet152"]


@_builder
def classification(*, name: str = "classification", backbone: Backbone = "resnet50", feature_dim: Count = 512,
                   classes: Classes = 100_000_000, batch_per_worker: Count = 32, dtype_bytes: Literal[2, 4] = 4,
                   optimizer: Literal["sgd", "momentum", "adagrad", "adam"] = "momentum",
                   seed: NonNegInt = 0, activation_scale: PosFloat = 1.0) -> ClassificationWorkload:
    """A ``backbone`` preset with a projection to ``feature_dim`` and a ``classes``-way FC softmax.

    ``activation_scale`` scales the preset's activation bytes (e.g. 0.5 with activation checkpointing).
    Activations scale with ``dtype_bytes`` (the presets are fp32).
    """
    spec = BACKBONES[backbone]
    width = int(spec["width"])
    return ClassificationWorkload(
        name=name, backbone=backbone, backbone_flops_per_sample=spec["flops"] + 2.0 * width * feature_dim,
        backbone_params=int(spec["params"]) + width * feature_dim + feature_dim, feature_dim=feature_dim,
        classes=classes, batch_per_worker=batch_per_worker, dtype_bytes=dtype_bytes, optimizer=optimizer,
        seed=seed, backbone_activation_bytes_per_sample=spec["activation_bytes"] * activation_scale
        * dtype_bytes / 4)
