"""The closed-form analytical step (``simulator.run.closed_form``) equals the engine's, batch size by batch size."""

import numpy as np
import pytest

from simulator.compute.roofline import load_device
from simulator.errors import SpecError
from simulator.network.fabric import Fabric
from simulator.options import FCOptions
from simulator.results.tables import StepSummary
from simulator.run.closed_form import STRATEGIES, step_times, supports
from simulator.run.sweep import sweep
from simulator.run.training import make_cluster, simulate_step
from simulator.strategies import REGISTRY, StrategyOptions, needs_servers
from simulator.strategies.base import Cluster
from simulator.strategies.des import DESOptions
from simulator.strategies.ps import PSOptions
from simulator.strategies.torchrec import SHARDINGS, ShardingOptions
from topologies import build, load_topology, parse_inline
from workloads import load_workload

TOPOLOGIES = ["leafspine16-oversub", "dgx:nodes=4,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true"]
BATCHES = np.array([32, 512, 4096])
# with the calibrated terms a preset leaves at 0: ID handling and a step's host time
H100 = load_device("h100").model_copy(update={"id_ns": 0.5, "dedup_ns": 2.0, "step_overhead_us": 30.0})


def assert_equal(quick: dict[str, np.ndarray], i: int, summary: StepSummary) -> None:
    """The closed form's figures at batch index ``i`` equal the engine's summary."""
    assert quick["step_time_s"][i] == pytest.approx(summary["step_time_s"], rel=1e-9)
    assert quick["bytes_on_wire"][i] == pytest.approx(summary["bytes_on_wire"], rel=1e-9)
    assert quick["bytes_per_worker_mean"][i] == pytest.approx(summary["bytes_per_worker"]["mean"], rel=1e-9)
    assert quick["compute_s"][i] == pytest.approx(summary["compute_s"], rel=1e-9)
    assert quick["exposed_comm_s"][i] == pytest.approx(summary["exposed_comm_s"], rel=1e-9, abs=1e-15)
    assert quick["memory_worker_bytes"][i] == pytest.approx(summary["memory_per_device_bytes"]["worker"])
    assert bool(quick["fits_memory"][i]) == summary["fits_memory"]


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("strategy", ["des", "des-rs", "des-a2a", "dp"])
@pytest.mark.parametrize(("workload", "des_input", "des_partial", "sets"), [
    ("dlrm-small", "gathered", "auto", []), ("fm-criteo", "gathered", "auto", []),
    ("lr-criteo", "replicated", "auto", []), ("deepfm-criteo", "gathered", "auto", []),
    ("widedeep-criteo", "replicated", "first-layer", []),
    ("dlrm-small", "gathered", "auto", ["embedding_update=fused"])])
def test_closed_form_equals_the_analytical_engine(topology: str, strategy: str, workload: str,
                                                  des_input: str, des_partial: str, sets: list[str]) -> None:
    """deepfm-criteo: auto sums the first layer's 417 values per sample (not 625); widedeep-criteo: first-layer
    forced (1,025, not 833); the owners' fused embedding backward."""
    cluster = make_cluster(Fabric(load_topology(topology)), strategy, H100, load_device("cpu-server"))
    options = StrategyOptions.default()
    options.des = DESOptions(input=des_input, partial=des_partial)
    quick = step_times(load_workload(workload, sets), cluster, strategy, BATCHES, options)
    for i, b in enumerate(BATCHES):
        summary = simulate_step(load_workload(workload, [*sets, f"batch_per_worker={b}"]), cluster, strategy,
                                "analytical", options=options).summary
        assert_equal(quick, i, summary)
        if strategy != "dp":
            assert (quick["des_partial"][i], quick["partial_width"][i]) == (summary["des_partial"],
                                                                            summary["partial_width"])
    if strategy != "dp" and workload in ("deepfm-criteo", "widedeep-criteo"):
        assert quick["des_partial"][0] == "first-layer"


def test_closed_form_des_a2a_without_routing_cost() -> None:
    """Without ID handling (a preset's id_ns 0) des-a2a's exchanges start at once, alongside the host time."""
    cluster = make_cluster(Fabric(load_topology(TOPOLOGIES[0])), "des-a2a", H100.model_copy(update={"id_ns": 0.0}),
                           load_device("cpu-server"))
    quick = step_times(load_workload("dlrm-small"), cluster, "des-a2a", BATCHES)
    for i, b in enumerate(BATCHES):
        assert_equal(quick, i, simulate_step(load_workload("dlrm-small", [f"batch_per_worker={b}"]), cluster,
                                             "des-a2a", "analytical").summary)


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("strategy", SHARDINGS)
@pytest.mark.parametrize(("workload", "column_shards", "sets"), [
    ("dlrm-small", 4, []), ("fm-criteo", 4, []), ("dlrm-small", 3, ["embedding_update=fused"]),
    ("deepfm-criteo", 2, ["popularity=zipf", "zipf_alpha=1.05"]), ("dlrm-criteo-tb", 4, ["hotness=4"])])
def test_closed_form_sharding_equals_the_analytical_engine(topology: str, strategy: str, workload: str,
                                                           column_shards: int, sets: list[str]) -> None:
    """Owners hold different tables (tw, cw: dlrm-small's 8 tables on 16 or 32 workers leave some with none;
    twrw: tables on the DGX's nodes, rows over a node's 8 GPUs), so the worker ending last decides compute_s:
    on the DGX at b = 4096, dlrm-criteo-tb's is worker 3 (cw) and 8 (twrw), not the first."""
    cluster = make_cluster(Fabric(load_topology(topology)), strategy, H100, load_device("cpu-server"))
    options = StrategyOptions.default()
    options.sharding = ShardingOptions(column_shards=column_shards)
    quick = step_times(load_workload(workload, sets), cluster, strategy, BATCHES, options)
    for i, b in enumerate(BATCHES):
        assert_equal(quick, i, simulate_step(load_workload(workload, [*sets, f"batch_per_worker={b}"]), cluster,
                                             strategy, "analytical", options=options).summary)


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize(("placement", "servers"), [("colocated", None), ("dedicated", 4)])
@pytest.mark.parametrize("dense", ["ps", "allreduce"])
def test_closed_form_ps_equals_the_analytical_engine(topology: str, placement: str, servers: int | None,
                                                     dense: str) -> None:
    cluster = make_cluster(Fabric(load_topology(topology)), "ps", H100, load_device("cpu-server"),
                           servers=servers, placement=placement)
    options = StrategyOptions.default()
    options.ps = PSOptions(dense=dense)
    quick = step_times(load_workload("dlrm-small"), cluster, "ps", BATCHES, options)
    for i, b in enumerate(BATCHES):
        summary = simulate_step(load_workload("dlrm-small", [f"batch_per_worker={b}"]), cluster, "ps", "analytical",
                                options=options).summary
        for key in ("step_time_s", "bytes_on_wire", "compute_s", "exposed_comm_s"):
            assert quick[key][i] == pytest.approx(summary[key], rel=1e-9), key
        assert quick["bytes_per_worker_mean"][i] == pytest.approx(summary["bytes_per_worker"]["mean"], rel=1e-9)
        for role in ("worker", "server"):
            assert quick[f"memory_{role}_bytes"][i] == pytest.approx(summary["memory_per_device_bytes"][role])
        assert bool(quick["fits_memory"][i]) == summary["fits_memory"]


def test_what_the_closed_form_covers() -> None:
    for strategy in ("ps", "des", "des-a2a", "dp", *SHARDINGS):
        assert supports(load_workload("dlrm-small"), strategy, "analytical")
    asynchronous = StrategyOptions.default()
    asynchronous.ps = PSOptions(mode="async")
    assert not supports(load_workload("dlrm-small"), "ps", "analytical", options=asynchronous)
    assert not supports(load_workload("dlrm-small"), "des", "flow")
    assert not supports(load_workload("dlrm-small", ["ids=sampled"]), "tw", "analytical")
    assert not supports(load_workload("dlrm-small"), "rw", "analytical", steps=2)
    assert not supports(load_workload("xc-1e6"), "des", "analytical")
    cluster = make_cluster(Fabric(load_topology("leafspine16")), "ps", load_device("h100"), load_device("cpu-server"))
    with pytest.raises(ValueError, match="closed form covers ps, des, des-rs, des-a2a, dp, tw, cw, rw, twrw"):
        step_times(load_workload("dlrm-small"), cluster, "ps", BATCHES, asynchronous)


FC_STRATEGIES = ("dp-fc", "ps-fc", "mp-fc", "mp-fc-knn")
# every fc option that changes the chain: buckets overlapping backward, top-k selection, fp16 on the wire, KNN
TUNED = FCOptions(overlap=True, topk_ratio=0.01, fp16_comm=True, knn_k=5, knn_candidates=512, knn_rebuild_steps=100)


def assert_fc_equals_engine(workload: str, cluster: Cluster, strategy: str,
                            options: StrategyOptions) -> dict[str, np.ndarray]:
    quick = step_times(load_workload(workload), cluster, strategy, BATCHES, options)
    for i, b in enumerate(BATCHES):
        summary = simulate_step(load_workload(workload, [f"batch_per_worker={b}"]), cluster, strategy, "analytical",
                                options=options).summary
        for key in ("step_time_s", "samples_per_s", "bytes_on_wire", "compute_s", "exposed_comm_s"):
            assert quick[key][i] == pytest.approx(summary[key], rel=1e-9), key
        assert quick["bytes_per_worker_mean"][i] == pytest.approx(summary["bytes_per_worker"]["mean"], rel=1e-9)
        for role, total in summary["memory_per_device_bytes"].items():
            assert quick[f"memory_{role}_bytes"][i] == pytest.approx(total, rel=1e-9), role
        assert bool(quick["fits_memory"][i]) == summary["fits_memory"]
    return quick


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("strategy", FC_STRATEGIES)
@pytest.mark.parametrize(("workload", "fc"), [("xc-1e6", FCOptions()), ("xc-1e7", TUNED),
                                              ("xc-1e6", FCOptions(overlap=True, bucket_bytes=10e6))])
def test_closed_form_fc_equals_the_analytical_engine(topology: str, strategy: str, workload: str,
                                                     fc: FCOptions) -> None:
    """ps-fc: a co-located server per worker. 10 MB buckets all-reduced on leafspine16-oversub take longer
    than their part of the backward (the comm stream paces the buckets); TUNED's top-k buckets take less."""
    cluster = make_cluster(Fabric(load_topology(topology)), strategy, H100, load_device("cpu-server"))
    options = StrategyOptions.default()
    options.fc = fc
    fits = assert_fc_equals_engine(workload, cluster, strategy, options)["fits_memory"]
    assert fits[0] and not fits[-1]  # 4,096 ResNet-50 samples' activations: 410 GB


@pytest.mark.parametrize(("placement", "servers"), [("dedicated", 1), ("colocated", 3)])
@pytest.mark.parametrize("workload", ["xc-1e6", "classification:classes=1e8,batch_per_worker=8"])
def test_closed_form_ps_fc_servers_equal_the_analytical_engine(placement: str, servers: int, workload: str) -> None:
    """Few servers for many rows: their update ends the step; co-located, the critical worker is the host of
    the largest class range (333,334 of 1e6), its compute time the worker's plus the server's update."""
    star = Fabric(load_topology("star:hosts=8,link_gbps=800"))
    cluster = make_cluster(star, "ps-fc", H100, load_device("cpu-server"), servers=servers, placement=placement)
    options = StrategyOptions.default()
    assert_fc_equals_engine(workload, cluster, "ps-fc", options)
    summary = simulate_step(load_workload(workload), cluster, "ps-fc", "analytical").summary
    assert summary["step_time_s"] > summary["worker_step_time_s"]["max"]
    assert summary["critical_worker"] == (2 if placement == "colocated" else 0)


def test_what_the_closed_form_covers_for_classification() -> None:
    xc, dlrm = load_workload("xc-1e6"), load_workload("dlrm-small")
    assert all(supports(xc, strategy, "analytical") for strategy in FC_STRATEGIES)
    assert not supports(xc, "mp-fc", "flow") and not supports(xc, "ps-fc", "analytical", steps=2)
    assert not supports(dlrm, "dp-fc", "analytical") and not supports(xc, "dp", "analytical")
    cluster = make_cluster(Fabric(load_topology("leafspine16")), "mp-fc-knn", H100, load_device("cpu-server"))
    options = StrategyOptions.default()
    options.fc = FCOptions(knn_k=10)
    with pytest.raises(SpecError, match=r"fc\.knn_k"):  # as the lowering
        step_times(load_workload("classification:classes=10"), cluster, "mp-fc-knn", BATCHES, options)


def test_a_sweep_evaluates_classification_points_in_closed_form() -> None:
    spec = {"base": {"workload": "xc-1e6", "fidelity": "analytical",
                     "topology": "dgx:nodes=2,gpus_per_node=4,nvlink_gbps=3600,nic_gbps=400,rails=true"},
            "grid": {"strategy": list(FC_STRATEGIES), "overlap": [False, True], "workload.batch_per_worker": [16, 256]}}
    engine, quick = sweep(spec, jobs=1), sweep({**spec, "closed_form": True}, jobs=1)
    assert (quick.evaluation == "closed form").all() and (engine.evaluation == "engine").all()
    assert (quick.error == "").all() and (engine.error == "").all()
    for column in ("step_time_s", "samples_per_s", "bytes_on_wire", "bytes_per_worker_mean", "compute_s",
                   "exposed_comm_s", "memory_worker_bytes", "memory_server_bytes"):
        expected = engine[column].to_numpy(float)
        assert quick[column].to_numpy(float) == pytest.approx(expected, rel=1e-9, nan_ok=True), column
    for column in ("key", "fits_memory", "servers", "workers", "model"):
        assert quick[column].tolist() == engine[column].tolist(), column


# ----- other link rates and latencies: one fabric's profiles price them all ------------------------------------
# per topology, four configurations in which every rate and latency parameter takes both its values
LINK_GRIDS = {
    "leafspine:leaves=2,hosts_per_leaf=4,spines=2": [
        {"host_gbps": 25, "uplink_gbps": 10, "latency_us": 0}, {"host_gbps": 400, "uplink_gbps": 800, "latency_us": 0},
        {"host_gbps": 25, "uplink_gbps": 800, "latency_us": 5}, {"host_gbps": 400, "uplink_gbps": 10, "latency_us": 5}],
    "dgx:nodes=2,gpus_per_node=4": [
        {"nic_gbps": 50, "nvlink_latency_us": 0.1, "latency_us": 0}, {"nic_gbps": 400, "nvlink_latency_us": 2,
                                                                      "latency_us": 0},
        {"nic_gbps": 50, "nvlink_latency_us": 2, "latency_us": 3}, {"nic_gbps": 400, "nvlink_latency_us": 0.1,
                                                                    "latency_us": 3}],
    "dragonfly:groups=3,routers_per_group=2,hosts_per_router=2,global_gbps=50,global_latency_us=3": [
        {"link_gbps": 25, "global_gbps": 10, "global_latency_us": 0}, {"link_gbps": 200, "global_gbps": 100,
                                                                       "global_latency_us": 0},
        {"link_gbps": 25, "global_gbps": 100, "global_latency_us": 10}, {"link_gbps": 200, "global_gbps": 10,
                                                                         "global_latency_us": 10}]}


@pytest.mark.parametrize(("topology", "strategy"), [(t, s) for t in list(LINK_GRIDS)[:2] for s in STRATEGIES]
                         + [(list(LINK_GRIDS)[2], "des")])
def test_closed_form_at_other_link_rates_equals_the_engine_on_the_fabric_built_at_them(topology: str,
                                                                                       strategy: str) -> None:
    """Host, uplink and NIC rates and latencies (dgx: spine rates derived from the NIC's, NVLink latency a class
    of its own; dragonfly: routes in and between groups, whose longest latency depends on which latency is
    larger) vary per configuration on a fabric built once; each configuration equals the analytical engine
    on the fabric built at its values."""
    name, built = parse_inline(topology)
    values = LINK_GRIDS[topology]
    workload = "dlrm-small" if REGISTRY[strategy].kind == "recommender" else "xc-1e6"
    batches = np.resize([64, 1024], len(values))
    servers = 2 if needs_servers(strategy) else None
    fabric = Fabric(build(name, **built))
    cluster = make_cluster(fabric, strategy, H100, load_device("cpu-server"), servers=servers)
    quick = step_times(load_workload(workload), cluster, strategy, batches, grid=fabric.grid(values))
    for i, (b, point) in enumerate(zip(batches, values, strict=True)):
        cluster = make_cluster(Fabric(build(name, **{**built, **point})), strategy, H100, load_device("cpu-server"),
                               servers=servers)
        summary = simulate_step(load_workload(workload, [f"batch_per_worker={b}"]), cluster, strategy,
                                "analytical").summary
        for key in ("step_time_s", "exposed_comm_s", "bytes_on_wire"):
            assert quick[key][i] == pytest.approx(summary[key], rel=1e-9), (key, point)


def test_the_sweep_evaluates_a_topology_shape_once_and_gives_the_engines_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Points that differ in batch size and link rates and latencies are one closed-form evaluation per
    strategy; their rows (the topology each point names included) equal the engine's."""
    from simulator.run import closed_form

    calls = []
    evaluate = closed_form.step_times
    monkeypatch.setattr(closed_form, "step_times", lambda *args, **kw: calls.append(1) or evaluate(*args, **kw))
    spec = {"base": {"workload": "dlrm-small", "fidelity": "analytical",
                     "topology": "leafspine:leaves=2,hosts_per_leaf=4,spines=2,host_gbps=100,uplink_gbps=200"},
            "grid": {"strategy": ["des", "ps"], "topology.host_gbps": [50, 400], "topology.uplink_gbps": [100, 800],
                     "topology.latency_us": [0, 2], "workload.batch_per_worker": [64, 4096]}}
    engine = sweep(spec, jobs=1)
    quick = sweep({**spec, "closed_form": True}, jobs=1)
    assert len(calls) == 2 and (quick.evaluation == "closed form").all() and (quick.error == "").all()
    for column in ("step_time_s", "samples_per_s", "bytes_on_wire", "bytes_per_worker_mean", "compute_s",
                   "exposed_comm_s", "memory_worker_bytes"):
        assert quick[column].to_numpy(float) == pytest.approx(engine[column].to_numpy(float), rel=1e-9), column
    for column in ("key", "topology", "workers", "servers", "batch_per_worker", "fits_memory"):
        assert quick[column].tolist() == engine[column].tolist(), column
