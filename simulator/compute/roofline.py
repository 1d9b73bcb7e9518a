"""Device presets and the roofline cost model of compute ops (docs/TRAINING_MODEL.md, "Compute and memory").

Op time = max(FLOPs / (peak x eff_flops), bytes / (bandwidth x eff_mem)) + launch overhead. Embedding lookups
and updates are memory-bound gathers/scatters of unique rows (``eff_gather``); backward of a dense layer costs
``backward_factor`` (2.0 unless calibrated) x its forward. Ops with no work (0 FLOPs and 0 bytes) do not exist
and cost nothing, not even a launch.

Presets: one YAML file per device in ``simulator/compute/presets/`` (the file stem is the preset name); each file
cites its datasheet. Which peak a workload's GEMMs run at (its ``precision``): ``workloads.precision``.
Units: ``*_tflops`` 1e12 FLOP/s (dense, no sparsity), ``*_GBps`` 1e9 bytes/s, ``*_bytes`` bytes, ``*_us``
microseconds, ``*_s`` seconds; memory sizes in messages are decimal GB (1e9).

Calibration profile (JSON, written by ``dessim calibrate``; every key optional)::

    {"devices": {"h100": {"eff_flops": 0.55, "launch_overhead_us": 7.2, "peak_tflops": {"bf16": 900}}},
     "backward_factor": 2.1, "link_efficiency": 0.9, "latency_us_extra": 2.0, "meta": {"torch": "2.3"}}

``devices`` overrides any Device field but ``name`` of the named preset (case-insensitive; ``peak_tflops``
entries are merged per dtype); ``backward_factor`` applies to every device unless a device overrides it;
``link_efficiency`` (achieved fraction of each link's rate) and ``latency_us_extra`` (added per message) are
network fields: ``dessim validate`` applies them to its local fabric, as it does ``collectives`` (per-call
costs by op) and ``jitter_sigma`` (how a rank's compute per step varies: for other runs, pass it as
``--straggler lognormal:sigma=S``); ``meta`` is free-form provenance;
``ranks`` maps a rank count to a whole profile measured with that many ranks on one machine (see
``CalibrationProfile.for_ranks``). Every problem is one :class:`~simulator.errors.SpecError` line.

>>> h100 = load_device("H100")
>>> f"{op_time_s(h100, 1e12, 0.0, dtype='bf16') * 1e3:.4f} ms"  # 1e12 / (989.4e12 x 0.6) + 5 us
'1.6895 ms'
"""

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from numpy.typing import ArrayLike
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from simulator.compute import PRESET_DIR, list_devices
from simulator.errors import SpecError, from_validation, read_text
from simulator.units import format_bytes, parse_size_bytes

FILE_SUFFIXES = (".yaml", ".yml", ".json")
DTYPES = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8")
DEFAULT_BACKWARD_FACTOR = 2.0
_SHOWN_PARTS = 3


def _check_dtypes(peaks: dict[str, float]) -> dict[str, float]:
    unknown = [key for key in peaks if key not in DTYPES]
    if unknown:
        raise ValueError(f"unknown dtype {unknown[0]!r}; allowed dtypes: {', '.join(DTYPES)}")
    return peaks


def _size(value: object) -> object:
    """Accept a size string such as ``80GB`` (1e9) or ``1TiB`` for a byte count; numbers pass through."""
    if isinstance(value, str):
        try:
            return float(parse_size_bytes(value))
        except SpecError as exc:
            raise ValueError(exc.allowed) from None
    return value


Fraction = Annotated[float, Field(strict=True, gt=0, le=1, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Bytes = Annotated[float, BeforeValidator(_size), Field(strict=True, gt=0, allow_inf_nan=False)]
PeakTflops = Annotated[dict[str, Positive], AfterValidator(_check_dtypes)]


class Device(BaseModel):
    """A compute device: dense peaks per dtype, memory bandwidth and capacity, launch cost, efficiencies.

    ``eff_gather`` (random row gathers/scatters) is normally below ``eff_mem`` (streaming); not enforced,
    since a calibration may measure otherwise. ``backward_factor``: backward time / forward time of dense
    layers. Constructing one with a bad field raises a one-line SpecError (``device.<field>``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="a non-empty device name, such as h100")
    kind: Literal["gpu", "cpu"] = Field(description="allowed: gpu, cpu")
    peak_tflops: PeakTflops = Field(description=f"dense peak per dtype in 1e12 FLOP/s, each > 0, fp32 required; "
                                                f"dtypes: {', '.join(DTYPES)}")
    mem_bandwidth_GBps: Positive = Field(description="memory bandwidth in 1e9 bytes/s, a number > 0")
    mem_capacity_bytes: Bytes = Field(description="memory capacity in bytes > 0: a number or a size such as 80GB")
    launch_overhead_us: NonNegative = Field(description="kernel launch / op dispatch cost in microseconds, >= 0")
    eff_flops: Fraction = Field(description="achieved fraction of peak FLOP/s for dense GEMMs, 0 < x <= 1")
    eff_mem: Fraction = Field(description="achieved fraction of memory bandwidth when streaming, 0 < x <= 1")
    eff_gather: Fraction = Field(description="achieved fraction of memory bandwidth for random row "
                                             "gathers/scatters, 0 < x <= 1")
    backward_factor: Positive = Field(DEFAULT_BACKWARD_FACTOR,
                                      description="backward / forward time of dense layers, a number > 0")
    lookup_ns: NonNegative = Field(0.0, description="index handling per looked-up ID (read, route, scatter) in "
                                                    "nanoseconds, >= 0; 0 in presets (ignored), calibrated")
    id_ns: NonNegative = Field(0.0, description="handling one ID of a batch before any lookup (which worker or "
                                                "server holds it, dedup, routing) in nanoseconds, >= 0; 0 in "
                                                "presets (ignored), calibrated")
    request_us: NonNegative = Field(0.0, description="a PS server's handling of one request (receive, decode, "
                                                     "dispatch) in microseconds, >= 0; 0 in presets (ignored), "
                                                     "calibrated")
    dedup_ns: NonNegative = Field(0.0, description="deduplicating one ID (a sort or hash unique: a PS worker's "
                                                   "keys) in nanoseconds, on top of id_ns, >= 0; 0 in presets "
                                                   "(ignored), calibrated")
    step_overhead_us: NonNegative = Field(0.0, description="host time of a training step outside its ops (the "
                                                           "framework's loop, glue between ops) in microseconds, "
                                                           ">= 0; 0 in presets (ignored), calibrated")
    description: str = Field("", description="free text")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise from_validation(exc, Device, prefix="device.") from None

    @field_validator("peak_tflops")
    @classmethod
    def _has_fp32(cls, peaks: dict[str, float]) -> dict[str, float]:
        if "fp32" not in peaks:
            raise ValueError("fp32 is required (the default dtype)")
        return peaks


class DeviceOverrides(BaseModel):
    """Calibrated values of Device fields (every one optional; ``name`` cannot be overridden)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["gpu", "cpu"] | None = None
    peak_tflops: PeakTflops | None = None
    mem_bandwidth_GBps: Positive | None = None
    mem_capacity_bytes: Bytes | None = None
    launch_overhead_us: NonNegative | None = None
    eff_flops: Fraction | None = None
    eff_mem: Fraction | None = None
    eff_gather: Fraction | None = None
    backward_factor: Positive | None = None
    lookup_ns: NonNegative | None = None
    id_ns: NonNegative | None = None
    dedup_ns: NonNegative | None = None
    request_us: NonNegative | None = None
    step_overhead_us: NonNegative | None = None
    description: str | None = None


class CollectiveCost(BaseModel):
    """What one call of a collective costs each rank on top of moving its bytes over the fabric: ``call_us``
    (setup, synchronization, launch: microseconds per call) and ``ns_per_byte`` (copying, reducing and
    packing the buffer: nanoseconds per byte of the buffer, a rank's sent bytes for point-to-point). NCCL's
    tuner has the same shape: a base latency per (op, algorithm) and a bandwidth it achieves."""

    model_config = ConfigDict(extra="forbid")

    call_us: NonNegative = Field(0.0, description="microseconds per call, >= 0")
    ns_per_byte: NonNegative = Field(0.0, description="nanoseconds per byte of the buffer, >= 0")


class CalibrationProfile(BaseModel):
    """A calibration profile (see the module docstring for the JSON schema); device keys are lowercase."""

    model_config = ConfigDict(extra="forbid")

    devices: dict[str, DeviceOverrides] = Field(
        default_factory=dict, description="a mapping of device name -> overrides of Device fields")
    backward_factor: Positive | None = Field(None, description="backward / forward time of dense layers, > 0")
    link_efficiency: Fraction | None = Field(None, description="achieved fraction of link bandwidth, 0 < x <= 1")
    latency_us_extra: NonNegative | None = Field(None, description="extra per-message latency in microseconds, >= 0")
    server: DeviceOverrides | None = Field(None, description="a mapping of Device fields of the PS servers as "
                                                            "calibrated (the executor's run numpy on the host CPU), "
                                                            "over the worker device's")
    jitter_sigma: NonNegative | None = Field(None, description="how a rank's compute time per step varies: "
                                             "exp(sigma Z), independent across ranks and steps, >= 0")
    collectives: dict[str, CollectiveCost] = Field(
        default_factory=dict, description="a mapping of collective op (allreduce, allgather, reducescatter, "
                                          "alltoall, p2p) -> its cost per call: call_us, ns_per_byte")
    meta: dict[str, Any] = Field(default_factory=dict, description="a mapping of free-form provenance")
    ranks: dict[int, "CalibrationProfile"] = Field(
        default_factory=dict, description="a mapping of rank count -> a whole profile measured with that many "
                                          "ranks sharing the calibrated machine")

    def for_ranks(self, ranks: int) -> "CalibrationProfile":
        """The profile measured with the rank count closest to ``ranks`` (ratio-wise), else this one. Ranks
        that share one machine share its cores and loopback: what they achieve depends on how many there are."""
        if not self.ranks:
            return self
        return self.ranks[min(self.ranks, key=lambda n: (abs(math.log(n / ranks)), n))]

    @field_validator("devices")
    @classmethod
    def _lowercase_names(cls, devices: dict[str, DeviceOverrides]) -> dict[str, DeviceOverrides]:
        lowered = {name.lower(): overrides for name, overrides in devices.items()}
        if len(lowered) != len(devices):
            raise ValueError("device names must be unique ignoring case")
        return lowered


def load_device(spec: str | Path) -> Device:
    """A validated Device from a preset name (case-insensitive) or a YAML/JSON file of Device fields.

    >>> load_device("a100").mem_bandwidth_GBps
    2039.0
    """
    text = str(spec).strip()
    path = Path(text)
    if path.suffix.lower() in FILE_SUFFIXES or "/" in text or "\\" in text:
        return _load_device_file(path)
    if text.lower() in list_devices():
        return _load_device_file(PRESET_DIR / f"{text.lower()}.yaml")
    raise SpecError("device", spec, f"unknown device; allowed: {', '.join(list_devices())}, "
                                    f"or a {'/'.join(FILE_SUFFIXES)} file of Device fields")


def _load_device_file(path: Path) -> Device:
    content, source = read_text(path, "device"), str(path)
    try:
        doc = json.loads(content) if path.suffix.lower() == ".json" else yaml.safe_load(content)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError("device", source, f"invalid {path.suffix.lstrip('.').upper() or 'YAML'}: "
                                          f"{' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict):
        raise SpecError("device", source, f"must be a mapping of Device fields: {', '.join(Device.model_fields)}")
    try:
        return Device(**{str(key): value for key, value in doc.items()})
    except SpecError as exc:
        raise SpecError(f"{source}:{exc.field.removeprefix('device.')}", exc.value, exc.allowed) from None


def load_calibration(path: str | Path) -> CalibrationProfile:
    """Read and validate a calibration profile (JSON); errors name the file and the field."""
    path = Path(path)
    source = str(path)
    try:
        doc = json.loads(read_text(path, "calibration"))
    except json.JSONDecodeError as exc:
        raise SpecError("calibration", source, f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SpecError("calibration", source, "must be a JSON object with devices, backward_factor, "
                                               "link_efficiency, latency_us_extra, meta")
    try:
        return CalibrationProfile.model_validate(doc)
    except ValidationError as exc:
        raise from_validation(exc, CalibrationProfile, prefix=f"{source}:") from None


def apply_calibration(device: Device, profile: CalibrationProfile) -> Device:
    """A new Device with the profile's overrides for ``device.name`` (and its ``backward_factor``) applied.

    A device the profile does not name keeps its values (except a profile-wide ``backward_factor``).
    """
    data = device.model_dump()
    if profile.backward_factor is not None:
        data["backward_factor"] = profile.backward_factor
    overrides = profile.devices.get(device.name.lower())
    if overrides is not None:
        changes = overrides.model_dump(exclude_none=True)
        data["peak_tflops"] = {**data["peak_tflops"], **changes.pop("peak_tflops", {})}
        data.update(changes)
    try:
        return Device(**data)
    except SpecError as exc:
        raise SpecError(f"calibration:{device.name}.{exc.field.removeprefix('device.')}", exc.value,
                        exc.allowed) from None


# --- cost functions: pure, elementwise over numpy arrays (scalars in -> float out) -------------------------


def _array(value: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr) & (arr >= 0)):
        bad = arr[~(np.isfinite(arr) & (arr >= 0))].flat[0] if arr.ndim else float(arr)
        raise SpecError(name, float(bad), "must be a finite number >= 0")
    return arr


def _fraction(value: float, name: str) -> float:
    if not (isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1):
        raise SpecError(name, value, "a fraction 0 < x <= 1")
    return float(value)


def _slots(optimizer_slots: float) -> float:
    """Optimizer state values per parameter (Adam: 2, Adagrad: 1, SGD: 0)."""
    if not (isinstance(optimizer_slots, int | float | np.number) and not isinstance(optimizer_slots, bool)
            and 0 <= optimizer_slots < math.inf):
        raise SpecError("optimizer_slots", optimizer_slots, "a number >= 0 of optimizer state values per parameter")
    return float(optimizer_slots)


def _result(seconds: np.ndarray) -> float | np.ndarray:
    return float(seconds) if np.ndim(seconds) == 0 else seconds


def peak_flops(device: Device, dtype: str = "fp32") -> float:
    """Dense peak of ``device`` in ``dtype``, FLOP/s (not TFLOPS)."""
    if dtype not in device.peak_tflops:
        raise SpecError("dtype", dtype, f"allowed on {device.name}: {', '.join(device.peak_tflops)}")
    return device.peak_tflops[dtype] * 1e12


def _roofline_s(device: Device, flops: ArrayLike, mem_s: np.ndarray, dtype: str, launches: float = 1.0) -> np.ndarray:
    """max(compute time, ``mem_s``) + ``launches`` launch overheads; 0 where there is no work at all."""
    flops = _array(flops, "flops")
    compute_s = flops / (peak_flops(device, dtype) * device.eff_flops) if np.any(flops) else np.zeros_like(flops)
    busy_s = np.maximum(compute_s, mem_s)
    return np.where((flops == 0) & (mem_s == 0), 0.0, busy_s + launches * device.launch_overhead_us * 1e-6)


def _mem_s(device: Device, bytes_moved: np.ndarray, eff: float) -> np.ndarray:
    """Seconds to move ``bytes_moved`` bytes at ``eff`` x the memory bandwidth."""
    return bytes_moved / (device.mem_bandwidth_GBps * 1e9 * eff)


def op_time_s(device: Device, flops: ArrayLike, bytes_moved: ArrayLike, dtype: str = "fp32",
              mem_eff: float | None = None) -> float | np.ndarray:
    """Roofline time of one op: max(flops / (peak x eff_flops), bytes / (bandwidth x eff)) + launch, seconds.

    ``eff`` is ``mem_eff`` if given (e.g. ``device.eff_gather`` for gathers) else ``device.eff_mem``. An op with
    0 FLOPs and 0 bytes does not exist and costs 0 (no launch). Elementwise over arrays.
    """
    eff = device.eff_mem if mem_eff is None else _fraction(mem_eff, "mem_eff")
    return _result(_roofline_s(device, flops, _mem_s(device, _array(bytes_moved, "bytes_moved"), eff), dtype))


def dense_forward_s(device: Device, flops: ArrayLike, weight_bytes: ArrayLike, activation_bytes: ArrayLike,
                    dtype: str = "fp32", kernels: int = 1) -> float | np.ndarray:
    """Forward of dense layers as one roofline op: ``flops`` vs weights + activations read/written (streaming).

    ``activation_bytes``: all activation traffic (inputs read, outputs written); ``kernels`` launches are paid.
    """
    moved = _array(weight_bytes, "weight_bytes") + _array(activation_bytes, "activation_bytes")
    return _result(_roofline_s(device, flops, _mem_s(device, moved, device.eff_mem), dtype, kernels))


def dense_backward_s(device: Device, flops: ArrayLike, weight_bytes: ArrayLike, activation_bytes: ArrayLike,
                     dtype: str = "fp32", kernels: int = 1,
                     backward_factor: float | None = None) -> float | np.ndarray:
    """Backward of dense layers: ``backward_factor`` (default ``device.backward_factor``, 2.0 unless
    calibrated) x the forward time of the same arguments, launches included."""
    factor = device.backward_factor if backward_factor is None else backward_factor
    if not (isinstance(factor, int | float) and not isinstance(factor, bool) and 0 < factor < math.inf):
        raise SpecError("backward_factor", factor, "a number > 0")
    return _result(factor * np.asarray(dense_forward_s(device, flops, weight_bytes, activation_bytes, dtype, kernels)))


def embedding_lookup_s(device: Device, lookups: ArrayLike, unique_rows: ArrayLike, row_bytes: ArrayLike,
                       pooled_rows: ArrayLike | None = None) -> float | np.ndarray:
    """Gather and pool embedding rows, memory-bound, seconds.

    Bytes: read ``unique_rows x row_bytes`` at ``eff_gather`` (repeated IDs hit in cache) + write
    ``pooled_rows x row_bytes`` of output at ``eff_mem``; ``pooled_rows`` defaults to ``lookups`` (no pooling:
    the upper bound). Plus ``lookups x lookup_ns`` of index handling (0 unless calibrated: narrow rows on a
    CPU are index-bound) and one launch; 0 when there is nothing to look up.
    """
    row = _array(row_bytes, "row_bytes")
    ids = _array(lookups, "lookups")
    written = (ids if pooled_rows is None else _array(pooled_rows, "pooled_rows")) * row
    mem_s = _mem_s(device, _array(unique_rows, "unique_rows") * row, device.eff_gather) + _mem_s(
        device, written, device.eff_mem) + ids * device.lookup_ns * 1e-9
    return _result(_roofline_s(device, 0.0, mem_s, "fp32"))


def id_handling_s(device: Device, ids: ArrayLike, dedup: bool = False) -> float | np.ndarray:
    """Find where ``ids`` IDs of a batch live (owner, routing; ``dedup``: and their distinct values) before
    looking them up: ``ids x (id_ns + dedup_ns if dedup)`` plus one launch, seconds; 0 when there are none or
    the terms are 0 (a preset's: ignored). Elementwise."""
    per_id_ns = device.id_ns + (device.dedup_ns if dedup else 0.0)
    return _result(_roofline_s(device, 0.0, _array(ids, "ids") * per_id_ns * 1e-9, "fp32"))


def sparse_update_bytes(rows: ArrayLike, row_bytes: ArrayLike, optimizer_slots: float) -> np.ndarray:
    """Bytes of a sparse optimizer update: read + write each row and its ``optimizer_slots`` state rows, read
    its gradient row: ``rows x row_bytes x (2 x (1 + slots) + 1)``."""
    return _array(rows, "rows") * _array(row_bytes, "row_bytes") * (2 * (1 + _slots(optimizer_slots)) + 1)


def embedding_fused_backward_s(device: Device, lookups: ArrayLike, unique_rows: ArrayLike, row_bytes: ArrayLike,
                               optimizer_slots: float, pooled_rows: ArrayLike | None = None) -> float | np.ndarray:
    """A lookup's backward with the optimizer fused in (FBGEMM's table-batched kernel), seconds: read the
    ``pooled_rows`` gradient rows (default ``lookups``) at ``eff_mem``, read and write each distinct row and its
    ``optimizer_slots`` state rows, ``unique_rows x row_bytes x 2 (1 + slots)``, at ``eff_gather``, plus
    ``lookups x lookup_ns`` and one launch. Against the unfused backward and update it saves writing each
    row's gradient, reading it back, and a launch."""
    row = _array(row_bytes, "row_bytes")
    ids = _array(lookups, "lookups")
    read = (ids if pooled_rows is None else _array(pooled_rows, "pooled_rows")) * row
    moved = _array(unique_rows, "unique_rows") * row * 2 * (1 + _slots(optimizer_slots))
    mem_s = (_mem_s(device, moved, device.eff_gather) + _mem_s(device, read, device.eff_mem)
             + ids * device.lookup_ns * 1e-9)
    return _result(_roofline_s(device, 0.0, mem_s, "fp32"))


def embedding_update_s(device: Device, unique_rows: ArrayLike, row_bytes: ArrayLike,
                       optimizer_slots: float) -> float | np.ndarray:
    """Sparse optimizer update of ``unique_rows`` rows on ``device``: ``sparse_update_bytes`` at ``eff_gather``
    plus one launch, seconds."""
    moved = sparse_update_bytes(unique_rows, row_bytes, optimizer_slots)
    return _result(_roofline_s(device, 0.0, _mem_s(device, moved, device.eff_gather), "fp32"))


def ps_server_update_s(server: Device, rows: ArrayLike, row_bytes: ArrayLike, optimizer_slots: float,
                       requests: ArrayLike = 0) -> float | np.ndarray:
    """A PS server's CPU applying the optimizer to ``rows`` received rows, seconds.

    ``sparse_update_bytes`` on the server's DRAM at ``eff_gather`` plus one dispatch, plus ``requests`` x
    ``server.request_us`` (handling each push: receive, decode, dispatch; 0 in presets).
    """
    moved = sparse_update_bytes(rows, row_bytes, optimizer_slots)
    update_s = _roofline_s(server, 0.0, _mem_s(server, moved, server.eff_gather), "fp32")
    return _result(update_s + _array(requests, "requests") * server.request_us * 1e-6)


def dense_update_s(device: Device, params: ArrayLike, dtype_bytes: float,
                   optimizer_slots: float) -> float | np.ndarray:
    """Streaming optimizer update of ``params`` dense parameters at ``eff_mem`` plus one launch, seconds.

    Bytes: ``params x dtype_bytes x (3 + 2 x slots)`` (read param, grad and slots; write param and slots);
    the optimizer's few FLOPs per parameter are ignored (memory-bound).
    """
    slots = _slots(optimizer_slots)
    moved = _array(params, "params") * _array(dtype_bytes, "dtype_bytes") * (3 + 2 * slots)
    return _result(_roofline_s(device, 0.0, _mem_s(device, moved, device.eff_mem), "fp32"))


# --- memory ------------------------------------------------------------------------------------------------


def fits(device: Device, needed_bytes: float | Mapping[str, float]) -> tuple[bool, str]:
    """Whether ``needed_bytes`` (a total, or named components in bytes) fits in the device's memory.

    Returns ``(True, "")`` or ``(False, reason)``, the reason naming the biggest components:

    >>> fits(load_device("h100"), {"sparse_shard": 90e9, "dense": 1.2e9})
    (False, 'needs 91.2 GB > 80.0 GB of h100 memory (sparse shard 90.0 GB, dense 1.2 GB)')
    """
    parts = dict(needed_bytes) if isinstance(needed_bytes, Mapping) else {"total": needed_bytes}
    for name, value in parts.items():
        if not (isinstance(value, int | float | np.number) and math.isfinite(value) and value >= 0):
            raise SpecError(f"memory.{name}", value, "a finite number of bytes >= 0")
    total = float(sum(parts.values()))
    if total <= device.mem_capacity_bytes:
        return True, ""
    return False, memory_reason(device, total, parts if isinstance(needed_bytes, Mapping) else {})


def memory_reason(device: Device, total_bytes: float, parts: Mapping[str, float]) -> str:
    """``needs X GB > Y GB of <device> memory (biggest parts, and N more Z GB)``: the one formatting helper."""
    def size(n_bytes: float) -> str:
        return format_bytes(n_bytes, ".1f")

    text = f"needs {size(total_bytes)} > {size(device.mem_capacity_bytes)} of {device.name} memory"
    ranked = sorted(((float(v), k) for k, v in parts.items() if v > 0), reverse=True)
    if not ranked:
        return text
    shown = [f"{name.replace('_', ' ')} {size(n)}" for n, name in ranked[:_SHOWN_PARTS]]
    rest = ranked[_SHOWN_PARTS:]
    if rest:
        shown.append(f"and {len(rest)} more {size(sum(n for n, _ in rest))}")
    return f"{text} ({', '.join(shown)})"
