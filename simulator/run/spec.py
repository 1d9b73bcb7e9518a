"""One run, specified once: the options of ``dessim run``, ``compare`` and ``trace``, of a sweep point and of
a job are the fields of ``RunSpec``.

Each field is declared here once, with its type, default and help; the strategies' options nest in it
(``ps``, ``des``, ``sharding``, ``fc``: their models, with their own help). Every field also has a flat key,
the name commands and sweeps use: the field's name, or the ``key`` its declaration gives (``ps.mode`` is
``ps_mode``); on the command line ``--`` + the key with dashes (``--ps-mode``), or the ``cli`` name it gives
(``--fault``, repeatable, for ``faults``). ``KEYS`` lists them; ``dessim list keys`` prints them.

``resolve`` turns a spec into what a simulation takes (workload, fabric, devices, options) and ``simulate``
runs one strategy of it.

>>> spec = RunSpec.from_flat({"strategy": "ps", "ps_mode": "ssp", "staleness": 2})
>>> spec.ps.mode, spec.ps.staleness, spec.fidelity
('ssp', 2, 'auto')
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from simulator.compute import list_devices
from simulator.errors import SpecError, allowed_text, check_choice, choices, value_range
from simulator.options import (
    COARSE_RATE_TOLERANCE,
    DEFAULT_BUDGET_S,
    DEFAULT_RATE_TOLERANCE,
    MAX_BUDGET_S,
    MAX_RATE_TOLERANCE,
    MAX_STEPS,
    CommDtype,
    DESOptions,
    EcmpName,
    FCOptions,
    NetworkModelName,
    Precision,
    PSOptions,
    ShardingOptions,
    StrategyOptions,
)
from simulator.units import unit_of

if typing.TYPE_CHECKING:
    import pandas as pd

    from simulator.compute.roofline import Device
    from simulator.network.fabric import Fabric
    from simulator.run.training import StepReport
    from simulator.strategies.base import Cluster
    from workloads import AnyWorkload

DEFAULT_WORKLOAD = "dlrm-criteo-tb"
DEFAULT_TOPOLOGY = "leafspine:leaves=4,hosts_per_leaf=4,spines=2,host_gbps=100,uplink_gbps=200,latency_us=1"


class RunSpec(BaseModel):
    """Every option of one simulated run (a training step of a workload under one strategy)."""

    model_config = ConfigDict(extra="forbid")
    workload: str = Field(DEFAULT_WORKLOAD, description="preset name, YAML file, or inline builder (dlrm:batch=2048)")
    set: list[str] = Field([], description="workload override key=value (repeatable)")
    topology: str = Field(DEFAULT_TOPOLOGY, description="preset name, YAML/JSON file, or inline builder string")
    faults: list[str] = Field([], description=(
        "link fault SRC-DST=FACTOR: keep FACTOR of the bandwidth, 0 or fail = failed and rerouted around "
        "(fnmatch patterns, SRC>DST one way, ,fraction=F,seed=S a random share of the matches; repeatable)"),
        json_schema_extra={"cli": "--fault"})
    ecmp: EcmpName = Field("hash", description=(
        "equal-cost next hop: hash (per flow, as Ethernet/RoCE ECMP) | dmodk (fat-tree static routing, as "
        "InfiniBand's: no collisions for permutations and all-to-all; flow level runs far faster)"))
    strategy: str | None = Field(None, description=(
        "ps | des | des-rs | des-a2a | dp | tw | cw | rw | twrw; for extreme classification dp-fc | ps-fc | mp-fc | "
        "mp-fc-knn (default: des, or mp-fc-knn)"))
    fidelity: Literal["auto", "flow", "analytical"] = Field("auto", description=(
        "auto (flow level if its estimated cost fits --budget-s, else analytical; the result says which and "
        "why) | flow (event driven, exact sharing) | analytical (closed form, equal shares)"))
    budget_s: float = Field(DEFAULT_BUDGET_S, gt=0.0, le=MAX_BUDGET_S, allow_inf_nan=False, description=(
        "fidelity auto: the most wall seconds flow level may take per strategy; past it, analytical"))
    network_model: NetworkModelName = Field("maxmin", description=(
        "how flows share links, as SimGrid names it: maxmin (equal shares, ideal capacity) | cm02 (shares by "
        "1/RTT, TCP window cap, ACK load) | lv08 (cm02 with SimGrid's TCP corrections: latency x13.01, rate "
        "x0.97; for TCP/Ethernet clusters)"))
    rate_tolerance: float | None = Field(None, ge=0.0, le=MAX_RATE_TOLERANCE, description=(
        f"flow: completion batching tolerance (0 = exact); default {DEFAULT_RATE_TOLERANCE:g}, or "
        f"{COARSE_RATE_TOLERANCE:g} where fidelity auto needs it to fit --budget-s"))
    device: str = Field("h100", description=f"worker device: a preset ({', '.join(list_devices())}) or a YAML file")
    server_device: str = Field("cpu-server", description="PS server device: a preset (as --device) or a YAML file")
    workers: int | None = Field(None, ge=1, description="workers (default: every host not a dedicated server)")
    servers: int | None = Field(None, ge=1, description="PS servers (default: one per worker co-located, or "
                                                         "hosts/8 dedicated)")
    placement: Literal["colocated", "dedicated"] = Field("colocated", description=(
        "PS servers: colocated (on worker hosts) | dedicated"))
    steps: int = Field(1, ge=1, le=MAX_STEPS, description="training steps to simulate (summary is per step)")
    calibration: str | None = Field(None, description="calibration profile JSON (dessim calibrate)")
    stragglers: list[str] = Field([], description=(
        "slower compute: RANKS=FACTOR (3=2, 0-7=1.5), bernoulli:p=P,factor=F,seed=S or lognormal:sigma=S,seed=S "
        "per rank and step (repeatable)"), json_schema_extra={"cli": "--straggler"})
    rank_devices: list[str] = Field([], description=(
        "mixed devices: RANKS=DEVICE runs those ranks on another device (0-7=a100; repeatable)"),
        json_schema_extra={"cli": "--rank-device"})
    precision: Precision | None = Field(None, description=(
        "GEMM precision: fp32 | tf32 | bf16 | fp16 (bf16/fp16: mixed precision, fp32 master weights and "
        "optimizer state, 2-byte activations; default: the workload's, fp32)"))
    comm_dtype: CommDtype | None = Field(None, description=(
        "dtype of values on the wire: fp32 | bf16 | fp16 (default: the activations', 2 bytes under bf16/fp16)"))
    ps: PSOptions = PSOptions()
    des: DESOptions = DESOptions()
    sharding: ShardingOptions = ShardingOptions()
    fc: FCOptions = FCOptions()

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_keys(cls, data: Any) -> Any:
        """Flat keys of nested options (``ps_mode: ssp``) go where they live (``ps: {mode: ssp}``)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in [k for k in data if k in KEYS and len(KEYS[k].path) == 2]:
            group, field = KEYS[key].path
            data[group] = {**(data.get(group) or {}), field: data.pop(key)}
        return data

    @property
    def options(self) -> StrategyOptions:
        return StrategyOptions(self.ps, self.des, self.sharding, self.fc)

    @property
    def workload_overrides(self) -> list[str]:
        """``set``, then ``precision`` and ``comm_dtype`` as the workload overrides they are."""
        numerics = [f"{k}={v}" for k, v in (("precision", self.precision), ("comm_dtype", self.comm_dtype)) if v]
        return [*self.set, *numerics]

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], name: Callable[[str], str] = lambda key: key) -> RunSpec:
        """A spec from flat keys (``ps_mode``, ``des_input``, ...); an invalid value is one SpecError naming
        the key as ``name(key)`` gives it (the command line's ``--ps-mode``)."""
        for key, value in values.items():
            if key not in KEYS:
                raise SpecError(name(key), value, f"unknown key; allowed: {', '.join(KEYS)}")
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise _one_error(exc, name) from None

    def to_flat(self) -> dict[str, Any]:
        """The spec as flat keys (every key, defaults included)."""
        dumped = self.model_dump()
        return {key: _get(dumped, k.path) for key, k in KEYS.items()}


@dataclass(frozen=True)
class Key:
    """A flat run key: where it lives in RunSpec, its declaration and its command-line option."""

    path: tuple[str, ...]
    field: FieldInfo

    @property
    def cli(self) -> str:
        extra = self.field.json_schema_extra
        return extra["cli"] if isinstance(extra, dict) and "cli" in extra else "--" + self.name.replace("_", "-")

    @property
    def name(self) -> str:
        extra = self.field.json_schema_extra
        return extra["key"] if isinstance(extra, dict) and "key" in extra else self.path[-1]


def _keys() -> dict[str, Key]:
    keys: dict[str, Key] = {}
    for name, field in RunSpec.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for sub, subfield in model.model_fields.items():
                key = Key((name, sub), subfield)
                keys[key.name] = key
        else:
            keys[name] = Key((name,), field)
    return keys


KEYS = _keys()


def key_table() -> pd.DataFrame:
    """One row per run key: ``key`` (sweeps, jobs), ``option`` (command line), ``type``, ``unit``, ``default``,
    ``help``."""
    import pandas as pd

    rows = [{"key": name, "option": key.cli, **_field_row(name, key.field)} for name, key in KEYS.items()]
    return pd.DataFrame(rows, dtype=object)


def field_table(model: type[BaseModel]) -> pd.DataFrame:
    """One row per field of a spec model (a sweep file, a jobs file, a workload, a device, a topology builder's
    parameters): ``key``, ``type``, ``unit``, ``default`` (``required`` where there is none), ``help``."""
    import pandas as pd

    return pd.DataFrame([{"key": name, **_field_row(name, field)} for name, field in model.model_fields.items()],
                        dtype=object)


def _field_row(name: str, field: FieldInfo) -> dict[str, Any]:
    """A field's type (its allowed values or range, where it has them), unit (from its name's suffix), default and
    help."""
    kinds = (field.annotation, *typing.get_args(field.annotation))
    bounded = all(typing.get_origin(a) not in (list, dict, tuple) for a in kinds)  # a container's bounds: its items'
    kind = " | ".join(choices(field)) or (bounded and value_range(field)) or _type_name(field.annotation)
    default = "required" if field.is_required() else field.get_default(call_default_factory=True)
    return {"type": kind, "unit": unit_of(name), "default": default, "help": field.description or ""}


def _type_name(annotation: Any) -> str:
    """A type as a person reads it: ``int``, ``list of str``, ``mapping of str to any``, ``int or none``."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if origin is tuple and args[-1:] == (Ellipsis,):
        return f"list of {_type_name(args[0])}"
    if origin is tuple:
        return f"pair of {' and '.join(_type_name(a) for a in args)}" if len(args) == 2 else "tuple"
    if args:  # a union
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(names)) + (" or none" if type(None) in args else "")
    return "any" if annotation is Any else getattr(annotation, "__name__", str(annotation))


def cli_name(key: str) -> str:
    """How the command line spells a flat key (``--ps-mode``; an unknown key as given)."""
    return KEYS[key].cli if key in KEYS else key


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _one_error(exc: ValidationError, name: Callable[[str], str]) -> SpecError:
    """The first validation error as one SpecError naming the flat key (``name(key)``) and what is allowed."""
    err = exc.errors()[0]
    loc = tuple(str(part) for part in err["loc"] if not isinstance(part, int))
    key = next((k for k, spec in KEYS.items() if spec.path == loc[: len(spec.path)]), ".".join(loc))
    return SpecError(name(key), err.get("input"), allowed_text(err, KEYS[key].field if key in KEYS else None))


# ----- resolving and running ----------------------------------------------------------------------------
@dataclass
class Scenario:
    """A spec made into the objects a simulation takes."""

    spec: RunSpec
    workload: AnyWorkload
    fabric: Fabric
    device: Device
    server_device: Device

    def strategies(self, names: list[str] | None = None, single: bool = False) -> list[str]:
        """``names`` checked against the workload (default: PS vs DES, or every extreme-classification
        strategy; with ``single`` the spec's strategy, or the last of those)."""
        from simulator.strategies import STRATEGIES, strategies_for
        from workloads import ClassificationWorkload

        names = names if names is not None else ([self.spec.strategy] if self.spec.strategy else None)
        for name in names or ():
            check_choice("strategy", name, STRATEGIES)
        if not names:
            names = (list(strategies_for(self.workload)) if isinstance(self.workload, ClassificationWorkload)
                     else ["ps", "des"])
            names = names[-1:] if single else names
        for name in names:
            if name not in strategies_for(self.workload):
                raise SpecError("strategy", name, f"allowed for this workload ({self.workload.model}): "
                                                  f"{', '.join(strategies_for(self.workload))}")
        return names

    def cluster(self, strategy: str) -> Cluster:
        """Workers and servers of ``strategy`` on the fabric, as the spec places them."""
        from simulator.run.training import make_cluster

        spec = self.spec
        return make_cluster(self.fabric, strategy, self.device, self.server_device, spec.workers, spec.servers,
                            spec.placement)

    def simulate(self, strategy: str, record_rates: bool = False, progress: Callable[[int, int], None] | None = None,
                 notice: Callable[[str], None] | None = None) -> StepReport:
        """One training step (``spec.steps`` of them) of ``strategy`` (``progress``, ``notice``: as
        ``run.training.simulate_step`` takes them)."""
        from simulator.run.training import simulate_step

        spec = self.spec
        return simulate_step(self.workload, self.cluster(strategy), strategy, spec.fidelity, spec.steps, spec.options,
                             spec.rate_tolerance, record_rates=record_rates and spec.fidelity != "analytical",
                             progress=progress, stragglers=spec.stragglers, rank_devices=spec.rank_devices,
                             network_model=spec.network_model, budget_s=spec.budget_s, notice=notice)


def resolve(spec: RunSpec, device_changes: Mapping[str, Any] | None = None) -> Scenario:
    """Load the spec's workload (with its overrides), devices (``device_changes``: worker Device fields set,
    then calibrated) and fabric (with faults). Presets, devices and fabrics are built once per process, so a
    sweep's points share them (and the analytical profiles cached on a fabric)."""
    from simulator.compute.roofline import Device, apply_calibration, load_calibration
    from workloads.load import override

    workload = _base_workload(spec.workload)
    workload = override(workload, spec.workload_overrides) if spec.workload_overrides else workload
    device, server_device = _device(spec.device), _device(spec.server_device)
    if device_changes:
        device = Device(**{**device.model_dump(), **device_changes})
    if spec.calibration:
        profile = load_calibration(spec.calibration)
        device, server_device = apply_calibration(device, profile), apply_calibration(server_device, profile)
    return Scenario(spec, workload, _fabric(spec.topology, tuple(spec.faults), spec.ecmp), device, server_device)


def _cached(build: Callable[[str], Any]) -> Callable[[str], Any]:
    """``build`` memoized per process, except for files (which may change between calls)."""
    memo = functools.lru_cache(maxsize=64)(build)

    def get(name: str, *rest: Any) -> Any:
        is_file = "/" in name or "\\" in name or Path(name).suffix.lower() in (".yaml", ".yml", ".json")
        return build(name, *rest) if is_file else memo(name, *rest)

    return get


@_cached
def _base_workload(name: str) -> AnyWorkload:
    from workloads import load_workload

    return load_workload(name)


@_cached
def _device(name: str) -> Device:
    from simulator.compute.roofline import load_device

    return load_device(name)


@_cached
def _fabric(topology: str, faults: tuple[str, ...] = (), ecmp: str = "hash") -> Fabric:
    from simulator.network.fabric import Fabric
    from topologies import load_cables

    return Fabric(load_cables(topology, faults), ecmp=ecmp)


def simulate_all(spec: RunSpec, names: list[str] | None = None, single: bool = False, record_rates: bool = False,
                 progress: Callable[[str, float, float], None] | None = None,
                 notice: Callable[[str], None] | None = None) -> list[StepReport]:
    """Simulate the strategies ``names`` of ``spec`` (default: its strategy, or the workload kind's; with
    ``single`` just one); ``progress(label, done, total)`` follows each, ``notice(text)`` hears when one is
    estimated to be long. Errors about the run keys the workload checks name them as the command line spells
    them, as does a ``servers`` count that none of the strategies uses (rather than ignoring it)."""
    from simulator.strategies import REGISTRY, needs_servers

    with named_as_options(spec):
        scenario = resolve(spec)
        names = scenario.strategies(names, single)
        if spec.servers is not None and not any(map(needs_servers, names)):
            served = " and ".join(name for name in REGISTRY if needs_servers(name))
            raise SpecError(cli_name("servers"), spec.servers, f"allowed only for {served} (omit it); not "
                                                               f"used by {', '.join(names)}")
        reports = []
        for name in names:
            follow = (lambda done, total, name=name: progress(f"simulating {name}", done, total)) if progress else None
            reports.append(scenario.simulate(name, record_rates, follow, notice))
    return reports


NAMED_IN_ERRORS = ("precision", "comm_dtype", "des_partial")  # run keys the workload checks


@contextmanager
def named_as_options(spec: RunSpec, name: Callable[[str], str] = cli_name) -> Iterator[None]:
    """Errors about a run key that the workload checks (``NAMED_IN_ERRORS``) and ``spec`` sets name that key as
    ``name`` spells it (``--precision``); set by ``--set`` instead, they keep the workload field's name."""
    try:
        yield
    except SpecError as error:
        field = error.field.removeprefix("classification.")
        if field not in NAMED_IN_ERRORS or spec.to_flat()[field] is None:
            raise
        raise SpecError(name(field), error.value, error.allowed) from None
