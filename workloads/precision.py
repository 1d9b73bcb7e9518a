"""Compute precision and communication dtype of a workload (docs/TRAINING_MODEL.md, "Precision").

Three fields of both workload kinds decide the bytes and the peak FLOP/s of a step:

- ``dtype_bytes`` (4 unless set): bytes per stored value: parameters, their gradients, optimizer state,
  embedding tables and their lookups and updates (the fp32 master copy of mixed precision);
- ``precision`` (``fp32`` unless set): the GEMMs' dtype. ``fp32`` is full precision: GEMMs and activations
  in the stored dtype (``dtype_bytes`` 4: fp32 on CUDA cores; the older ``dtype_bytes: 2`` is pure bf16 and
  8 fp64, as before). ``tf32`` runs GEMMs on tensor cores, every value still 4 bytes. ``bf16`` and ``fp16``
  are mixed precision as PyTorch AMP trains: GEMMs at the tensor-core peak, activations 2 bytes, master
  weights, gradients and optimizer state fp32 (so they need ``dtype_bytes`` 4);
- ``comm_dtype`` (unset: the activations' dtype, so 2 bytes under bf16/fp16, else ``dtype_bytes``): every
  value a collective or message carries (gradients, partial results, features, pooled embeddings, rows),
  as DDP's bf16/fp16 compression hooks and TorchRec's quantized comms send them. IDs, labels and the
  softmax's row statistics keep their own sizes. It changes the wire only: buffers in memory hold
  activations at the activations' dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.errors import SpecError

if TYPE_CHECKING:
    from simulator.compute.roofline import Device

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
COMM_DTYPES = ("fp32", "bf16", "fp16")
#: Bytes per value of each dtype.
DTYPE_BYTES = {"fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2}
#: The dtype of a full-precision (``precision: fp32``) workload's GEMMs, by ``dtype_bytes``.
STORED_DTYPES = {2: "bf16", 4: "fp32", 8: "fp64"}
MIXED = ("bf16", "fp16")


def check_precision(precision: str, dtype_bytes: int) -> None:
    """Mixed and tf32 precision keep fp32 master values: a SpecError unless ``dtype_bytes`` is 4 for them."""
    if precision != "fp32" and dtype_bytes != 4:
        raise SpecError("precision", precision, f"allowed with dtype_bytes {dtype_bytes}: fp32 (values are already "
                                                f"{STORED_DTYPES[dtype_bytes]}); tf32, bf16 and fp16 keep fp32 "
                                                "master weights: set dtype_bytes 4")


def check_device(precision: str, device: Device, field: str = "precision") -> None:
    """A SpecError naming ``field`` unless ``device``'s preset has a peak for ``precision`` (V100: no tf32 or
    bf16; the CPU server: fp32 only)."""
    if precision not in device.peak_tflops:
        allowed = ", ".join(p for p in PRECISIONS if p in device.peak_tflops)
        raise SpecError(field, precision, f"allowed on {device.name}: {allowed}")


class MixedPrecision:
    """What ``dtype_bytes``, ``precision`` and ``comm_dtype`` imply (a mixin of the workload models)."""

    if TYPE_CHECKING:  # fields of the models (annotations here would become pydantic fields, first)
        dtype_bytes: int
        precision: str
        comm_dtype: str | None

    @property
    def compute_dtype(self) -> str:
        """The GEMMs' dtype, whose peak the roofline uses: ``precision``, or the stored dtype under fp32."""
        return STORED_DTYPES[self.dtype_bytes] if self.precision == "fp32" else self.precision

    @property
    def activation_value_bytes(self) -> int:
        """Bytes per activation value: 2 under bf16/fp16 mixed precision, else ``dtype_bytes``."""
        return DTYPE_BYTES[self.precision] if self.precision in MIXED else self.dtype_bytes

    @property
    def wire_dtype(self) -> str:
        """The dtype values travel in: ``comm_dtype``, else the activations' dtype."""
        if self.comm_dtype is not None:
            return self.comm_dtype
        return self.precision if self.precision in MIXED else STORED_DTYPES[self.dtype_bytes]

    @property
    def comm_bytes(self) -> int:
        """Bytes per value on the wire (of ``wire_dtype``)."""
        return DTYPE_BYTES[self.wire_dtype]
