"""Each strategy's bytes per category against docs/TRAINING_MODEL.md's formulas, computed here independently."""

import numpy as np
import pytest
from conftest import fattree_graph, star_graph

from simulator.compute.roofline import load_device
from simulator.network.fabric import Fabric
from simulator.network.fluid import FluidCore
from simulator.run.training import make_cluster, simulate_step
from simulator.strategies import RECOMMENDER_STRATEGIES, StrategyOptions
from simulator.strategies.des import DESOptions
from simulator.strategies.ps import PSOptions
from simulator.strategies.torchrec import ShardingOptions
from workloads import Table, Workload
from workloads.ids import make_rng, sample_batch_ids

ROWS, DIM, FIELDS, HOT, BATCH = 5_000, 16, 3, 2, 64
S, KEY = 4, 8  # dtype bytes, id bytes


def workload(ids: str = "expected", model: str = "dnn", rows: int = ROWS, batch: int = BATCH,
             popularity: str = "uniform", tables: int = 1) -> Workload:
    specs = [Table(name=f"t{i}", rows=rows, dim=DIM, params_per_id=DIM, fields=FIELDS, hotness=HOT,
                   popularity=popularity, zipf_alpha=1.1) for i in range(tables)]
    return Workload(name="test", model=model, tables=specs, dense_features=4, bottom_mlp=[8], top_mlp=[16, 1],
                    interaction="concat", batch_per_worker=batch, dtype_bytes=S, id_bytes=KEY, ids=ids, seed=3)


def run(wl: Workload, strategy: str, hosts: int, *, servers: int | None = None, placement: str = "colocated",
        workers: int | None = None, dense: str = "ps", fidelity: str = "analytical", steps: int = 1,
        des_input: str = "gathered", mode: str = "sync", column_shards: int = 4, device: str = "h100",
        des_partial: str = "fields"):
    fabric = Fabric(star_graph(hosts))
    cluster = make_cluster(fabric, strategy, load_device(device), load_device("cpu-server"), workers, servers,
                           placement)
    options = StrategyOptions(PSOptions(dense=dense, mode=mode), DESOptions(input=des_input, partial=des_partial),
                              ShardingOptions(column_shards=column_shards))
    return simulate_step(wl, cluster, strategy, fidelity, steps, options)


def uniform_unique(rows: int, draws: float) -> float:
    return rows * (1 - (1 - 1 / rows) ** draws)


def per_worker(report, category: str, column: str = "bytes_sent") -> np.ndarray:
    """Bytes of ``category`` per worker (workers are hosts 0..workers-1 in every test here)."""
    trace = report.trace
    rows = trace[(trace.category == category) & (trace["rank"] < report.summary["workers"])]
    return rows.groupby("rank")[column].sum().to_numpy()


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ps_bytes_match_the_formulas_and_do_not_grow_with_workers(n: int) -> None:
    """Dedicated servers: a worker pulls U keys and U rows, pushes U keys and U row gradients."""
    p = 2
    wl = workload()
    report = run(wl, "ps", n + p, servers=p, placement="dedicated")
    u = uniform_unique(ROWS, BATCH * FIELDS * HOT)  # one table shared by 3 fields: their draws pool
    assert np.allclose(per_worker(report, "sparse.pull"), u * KEY)
    assert np.allclose(per_worker(report, "sparse.pull", "bytes_received"), u * DIM * S)
    assert np.allclose(per_worker(report, "sparse.push"), u * (KEY + DIM * S))
    dense = wl.dense_params * S
    assert np.allclose(per_worker(report, "dense.push"), dense)
    assert np.allclose(per_worker(report, "dense.pull", "bytes_received"), dense)
    by_cat = report.summary["bytes_by_category"]
    assert by_cat["sparse.pull"] == pytest.approx(n * u * (KEY + DIM * S))
    assert by_cat["sparse.push"] == pytest.approx(n * u * (KEY + DIM * S))
    # Independent of N at a fixed local batch:
    expected_worker = 2 * u * (KEY + DIM * S) + 2 * dense
    assert report.summary["bytes_per_worker"]["max"] == pytest.approx(expected_worker)


@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("variant", ["des", "des-rs"])
def test_des_bytes_grow_as_n_minus_1_over_n_times_global_batch(n: int, variant: str) -> None:
    wl = workload()
    report = run(wl, variant, n)
    big_b, r, m = n * BATCH, wl.partial_width, wl.ids_per_sample
    assert r == FIELDS * DIM and m == FIELDS * HOT
    share = (n - 1) / n
    forward = (2 if variant == "des" else 1) * share * big_b * r * S
    assert np.allclose(per_worker(report, "des.partials"), forward)
    assert np.allclose(per_worker(report, "des.partials_grad"), share * big_b * r * S)
    assert np.allclose(per_worker(report, "des.ids"), share * big_b * m * KEY)
    assert np.allclose(per_worker(report, "dense.allreduce"), 2 * share * wl.dense_params * S)
    assert "sparse.pull" not in report.summary["bytes_by_category"]


def test_des_rs_sends_half_the_forward_bytes_of_des() -> None:
    wl = workload()
    des = run(wl, "des", 4).summary["bytes_by_category"]["des.partials"]
    rs = run(wl, "des-rs", 4).summary["bytes_by_category"]["des.partials"]
    assert rs == pytest.approx(des / 2)


@pytest.mark.parametrize("variant", ["des", "des-rs", "des-a2a"])
def test_des_with_replicated_input_sends_no_ids(variant: str) -> None:
    by_cat = run(workload(), variant, 4, des_input="replicated").summary["bytes_by_category"]
    assert "des.ids" not in by_cat and by_cat["des.partials"] > 0


@pytest.mark.parametrize("strategy", RECOMMENDER_STRATEGIES)
def test_one_worker_sends_nothing(strategy: str) -> None:
    report = run(workload(), strategy, 1, servers=1 if strategy == "ps" else None)
    assert report.summary["bytes_on_wire"] == 0
    assert report.summary["step_time_s"] > 0
    assert report.summary["exposed_comm_s"] == pytest.approx(0, abs=1e-12)


def test_ps_with_sampled_ids_counts_the_drawn_ids() -> None:
    """ids=sampled: keys per (worker, server) are the distinct drawn IDs with id mod P == server."""
    n, p = 3, 2
    wl = workload(ids="sampled", popularity="zipf")
    report = run(wl, "ps", n + p, servers=p, placement="dedicated")
    trace = report.trace
    pulls = trace[(trace.op == "pull.keys")].set_index("rank")["bytes_sent"]
    for w in range(n):
        ids = sample_batch_ids(wl, BATCH, make_rng(wl.seed, w, 0))["t0"]
        assert pulls[w] == pytest.approx(len(np.unique(ids)) * KEY)
    servers_got = trace[(trace.op == "pull.keys") & (trace["rank"] >= n)].sort_values("rank")["bytes_received"]
    expected = np.zeros(p)
    for w in range(n):
        unique = np.unique(sample_batch_ids(wl, BATCH, make_rng(wl.seed, w, 0))["t0"])
        expected += np.bincount(unique % p, minlength=p) * KEY
    assert np.allclose(servers_got.to_numpy(), expected)


def test_des_a2a_sampled_ids_go_to_their_owners() -> None:
    n = 4
    wl = workload(ids="sampled")
    report = run(wl, "des-a2a", n)
    trace = report.trace
    sent = trace[trace.op == "des.ids"].set_index("rank")["bytes_sent"]
    for w in range(n):
        ids = sample_batch_ids(wl, BATCH, make_rng(wl.seed, w, 0))["t0"].ravel()
        assert sent[w] == pytest.approx(np.sum(ids % n != w) * KEY)
    assert np.allclose(per_worker(report, "des.partials"), (n - 1) * BATCH * wl.partial_width * S)


def test_dp_all_reduces_every_table() -> None:
    wl = workload()
    report = run(wl, "dp", 4)
    assert np.allclose(per_worker(report, "sparse.allreduce"), 2 * 3 / 4 * ROWS * DIM * S)


def test_step_time_is_the_trace_critical_path_and_overlap_is_visible() -> None:
    """DES: the dense all-reduce runs while the sparse backward computes."""
    report = run(workload(batch=4096), "des", 4, fidelity="flow")
    trace = report.trace
    assert report.summary["step_time_s"] == pytest.approx(trace.end_s.max())
    assert report.summary["overlap_s"] > 0
    worker = report.summary["critical_worker"]
    mine = trace[trace["rank"] == worker]
    compute_s = (mine[mine.kind == "compute"].end_s - mine[mine.kind == "compute"].start_s).sum()
    assert report.summary["compute_s"] == pytest.approx(compute_s)
    assert report.summary["exposed_comm_s"] == pytest.approx(trace.end_s.max() - compute_s)


@pytest.mark.parametrize("strategy", RECOMMENDER_STRATEGIES)
def test_every_strategy_runs_at_both_fidelities(strategy: str) -> None:
    for fidelity in ("flow", "analytical"):
        report = run(workload(), strategy, 4, fidelity=fidelity, servers=2 if strategy == "ps" else None)
        assert report.summary["step_time_s"] > 0
        assert report.summary["fits_memory"]


@pytest.mark.parametrize("ecmp", ["hash", "dmodk"])
def test_no_strategy_ever_couples_two_flows_on_one_route(monkeypatch, ecmp: str) -> None:
    """Why flow level solves flow by flow, not by classes of flows on one route (issue 18): at every rate solve
    of every recommender strategy's step (16-host fat-tree, 3 tables), the coupled flows cross pairwise distinct
    link sets, so such classes would all have one member. If a strategy ever repeats a route, this fails and the
    weighted class solve (tests/test_network.py) becomes worth wiring in."""
    largest_class, solves = [], []
    resolve = FluidCore._resolve_rates

    def counting(core: FluidCore, *args) -> None:
        cpl = core.cpl
        links = core.fabric.route_links[cpl.route[cpl.alive[: cpl.n]]]
        largest_class.append(np.unique(np.sort(links, axis=1), axis=0, return_counts=True)[1].max(initial=0))
        return resolve(core, *args)

    monkeypatch.setattr(FluidCore, "_resolve_rates", counting)
    fabric = Fabric(fattree_graph(4), ecmp=ecmp)
    for strategy in RECOMMENDER_STRATEGIES:
        cluster = make_cluster(fabric, strategy, load_device("h100"), load_device("cpu-server"))
        simulate_step(workload(tables=3), cluster, strategy, "flow", 1,
                      StrategyOptions(PSOptions(), DESOptions(), ShardingOptions()))
        solves.append(len(largest_class))
    assert min(np.diff([0, *solves])) > 0  # every strategy's step solved rates
    assert max(largest_class) == 1


def test_ps_with_dense_all_reduced_among_workers() -> None:
    n, p = 4, 2
    wl = workload()
    report = run(wl, "ps", n + p, servers=p, placement="dedicated", dense="allreduce")
    by_cat = report.summary["bytes_by_category"]
    assert "dense.push" not in by_cat and "dense.pull" not in by_cat
    assert np.allclose(per_worker(report, "dense.allreduce"), 2 * (n - 1) / n * wl.dense_params * S)


def test_table_wise_sends_ids_to_owners_and_gets_pooled_rows_back() -> None:
    """4 equal tables on 2 workers: each owns 2; a worker sends the other's 2 tables' IDs, gets 2 pooled."""
    wl = workload(tables=4)
    report = run(wl, "tw", 2)
    ids_per_table, pooled_per_table = BATCH * FIELDS * HOT * KEY, BATCH * FIELDS * DIM * S
    assert np.allclose(per_worker(report, "sparse.ids"), 2 * ids_per_table)
    assert np.allclose(per_worker(report, "sparse.pooled", "bytes_received"), 2 * pooled_per_table)
    assert np.allclose(per_worker(report, "sparse.pooled_grad"), 2 * pooled_per_table)


def test_column_wise_splits_each_table_across_workers() -> None:
    """One table cut into 2 column blocks on 2 workers: IDs go to both, each returns half the columns."""
    wl = workload()
    report = run(wl, "cw", 2, column_shards=2)
    assert np.allclose(per_worker(report, "sparse.ids"), BATCH * FIELDS * HOT * KEY)
    assert np.allclose(per_worker(report, "sparse.pooled", "bytes_received"), BATCH * FIELDS * DIM // 2 * S)


def test_row_wise_is_ids_by_all_to_all_and_a_reduce_scatter_of_pooled_rows() -> None:
    n = 4
    wl = workload()
    report = run(wl, "rw", n)
    share = (n - 1) / n
    assert np.allclose(per_worker(report, "sparse.ids"), share * BATCH * FIELDS * HOT * KEY)
    assert np.allclose(per_worker(report, "sparse.pooled"), share * n * BATCH * FIELDS * DIM * S)


def test_data_parallel_does_not_fit_when_tables_outgrow_the_device() -> None:
    report = run(workload(rows=400_000_000), "dp", 2, device="v100")
    assert not report.summary["fits_memory"]
    worker = report.summary["memory"]["worker"]
    assert not worker["fits"] and "tables" in worker["reason"] and "v100" in worker["reason"]
    assert worker["bytes"] > 32e9


def test_async_ps_does_not_wait_for_the_update_and_sync_does() -> None:
    """Sync: a server answers step k+1's keys only after applying step k's update; async: right away."""
    n, p = 4, 2
    wl = workload(batch=1024)
    results = {mode: run(wl, "ps", n + p, servers=p, placement="dedicated", mode=mode, steps=3, fidelity="flow")
               for mode in ("sync", "async")}
    for mode, report in results.items():
        trace = report.trace
        on_servers = trace[trace["rank"] >= n]
        update_end = on_servers[(on_servers.op == "server.update") & (on_servers.step == 0)].end_s.min()
        next_pull = on_servers[(on_servers.op == "pull.keys") & (on_servers.step == 1)].start_s.min()
        assert (next_pull >= update_end - 1e-12) == (mode == "sync")
    assert results["async"].summary["step_time_s"] <= results["sync"].summary["step_time_s"]


def test_table_wise_row_wise_splits_rows_inside_nodes_and_crosses_nodes_on_rails() -> None:
    """2 nodes x 2 GPUs, 2 equal tables: one per node, rows split over its 2 GPUs (by id mod 2)."""
    from topologies import load_topology

    wl = workload(tables=2)
    fabric = Fabric(load_topology("dgx:nodes=2,gpus_per_node=2,nvlink_gbps=3600,nic_gbps=400,rails=true"))
    cluster = make_cluster(fabric, "twrw", load_device("h100"), load_device("cpu-server"))
    trace = simulate_step(wl, cluster, "twrw", "flow").trace
    ids, pooled = BATCH * FIELDS * HOT * KEY, BATCH * FIELDS * DIM * S
    sent = trace.groupby(["op", "rank"], observed=True).bytes_sent.sum()
    for rank in range(4):
        assert sent[("input_dist", rank)] == pytest.approx(1.5 * ids)  # half its own node's table, all the other's
        assert sent[("output_dist.intra", rank)] == pytest.approx(2 * pooled)  # (2-1)/2 of B = 4 b samples
        assert sent[("output_dist.cross", rank)] == pytest.approx(pooled)  # to the same local rank of the other node
        assert sent[("output_dist.grad.cross", rank)] == pytest.approx(pooled)


def test_async_and_bounded_staleness_give_each_worker_its_own_request_stream() -> None:
    """ssp (bound s=1): a step-3 pull waits for every worker's step-1 update, not step 2's.
    async: a worker's next pull leaves when its own push is done, whatever the others do."""
    n, p = 3, 2
    wl = workload(ids="sampled", popularity="zipf", batch=2048)  # workers differ: distinct IDs differ
    ssp = run(wl, "ps", n + p, servers=p, placement="dedicated", mode="ssp", steps=4, fidelity="flow")
    trace = ssp.trace
    servers = trace["rank"] >= n
    step1_updates = trace[servers & (trace.op == "server.update") & (trace.step == 1)].end_s.max()
    step3_pulls = trace[servers & (trace.op == "pull.keys") & (trace.step == 3)]
    assert len(step3_pulls) == n * p  # one request stream per worker, on every server
    assert step3_pulls.start_s.min() >= step1_updates - 1e-12

    trace = run(wl, "ps", n + p, servers=p, placement="dedicated", mode="async", steps=2, fidelity="flow").trace
    mine = trace[trace["rank"] < n]
    for w in range(n):
        push_end = mine[(mine["rank"] == w) & (mine.op == "push") & (mine.step == 0)].end_s.max()
        dense_end = mine[(mine["rank"] == w) & (mine.op == "dense.push") & (mine.step == 0)].end_s.max()
        next_pull = mine[(mine["rank"] == w) & (mine.op == "pull.keys") & (mine.step == 1)].start_s.min()
        assert next_pull == pytest.approx(max(push_end, dense_end), rel=1e-12)


@pytest.mark.parametrize("strategy", ["ps", "des", "des-rs", "tw", "rw"])
def test_flow_and_analytical_agree_on_a_star(strategy: str) -> None:
    """On a star every ring hop and bipartite exchange shares links evenly: the two backends agree."""
    wl = workload(tables=2)
    kwargs = {"servers": 2, "placement": "dedicated"} if strategy == "ps" else {}
    flow = run(wl, strategy, 6, fidelity="flow", **kwargs).summary
    analytical = run(wl, strategy, 6, fidelity="analytical", **kwargs).summary
    assert flow["step_time_s"] == pytest.approx(analytical["step_time_s"], rel=1e-9)
    assert flow["bytes_on_wire"] == pytest.approx(analytical["bytes_on_wire"], rel=1e-12)


def test_dense_part_pays_one_launch_per_linear_layer_and_one_for_interaction_and_loss() -> None:
    """DLRM with a 2-layer bottom and 3-layer top MLP: 6 launches forward, x backward_factor backward."""
    from simulator.compute import roofline
    from simulator.strategies import costs
    from workloads import dlrm

    workload = dlrm(n_tables=4, rows=1000, dim=8, bottom_mlp=[16, 8], top_mlp=[32, 16, 1])
    device = load_device("h100").model_copy(update={"launch_overhead_us": 10.0})
    one_launch = roofline.dense_forward_s(device, 64 * workload.dense_flops_per_sample,
                                         workload.dense_params * workload.dtype_bytes,
                                         64 * workload.activation_bytes_per_sample)
    assert len(workload.linear_layers) == 5
    assert costs.dense_forward_s(workload, device, 64) == pytest.approx(one_launch + 5 * 10e-6, rel=1e-12)
    assert costs.dense_backward_s(workload, device, 64) == pytest.approx(
        device.backward_factor * (one_launch + 5 * 10e-6), rel=1e-12)


@pytest.mark.parametrize(("strategy", "category"), [("des-a2a", "des.lengths"), ("rw", "sparse.lengths"),
                                                    ("tw", "sparse.lengths"), ("cw", "sparse.lengths")])
def test_all_to_all_routing_sends_int32_lengths_per_sample_and_field_before_the_ids(strategy: str,
                                                                                     category: str) -> None:
    """A KeyedJaggedTensor's lengths: b per field of the tables (or column blocks) each owner holds rows of,
    4 bytes each, to every other owner, in a round before the IDs. Row-wise routing sends every field to
    every owner (grows with N); table-wise only the owner's tables' fields."""
    n, tables = 4, 4
    wl = workload(tables=tables)
    report = run(wl, strategy, n, column_shards=2)
    fields_to_each = {"des-a2a": tables * FIELDS, "rw": tables * FIELDS}.get(strategy)
    sent = per_worker(report, category)
    if fields_to_each is not None:
        assert np.allclose(sent, (n - 1) * BATCH * fields_to_each * 4)
    else:  # tw: one table per owner; cw: 2 blocks per table over 4 owners (the fields counted per block)
        blocks = 2 if strategy == "cw" else 1
        assert sent.sum() == pytest.approx((n - 1) * BATCH * tables * blocks * FIELDS * 4)
    trace = report.trace
    first = trace[trace.category == category].end_s.max()
    assert (trace[trace.category.isin(["des.ids", "sparse.ids"])].start_s >= first - 1e-15).all()


def test_table_wise_shards_spread_over_nodes_by_cost() -> None:
    """8 equal tables on 16 ranks in 2 nodes of 8: 4 tables per node, one per rank (they used to fill node
    0). Cost first: a table looked up 4 times per sample goes before 4 looked up once; the greedy then
    balances lookup work, not storage (TorchRec's greedy planner)."""
    from simulator.strategies.torchrec import _Plan, place_shards
    from topologies import load_topology
    from workloads import dlrm

    owners = place_shards(dlrm(n_tables=8, rows=10_000), 16, ranks_per_node=8)[2]
    assert sorted(np.bincount(owners // 8, minlength=2).tolist()) == [4, 4]
    assert len(set(owners.tolist())) == 8
    cluster = make_cluster(Fabric(load_topology("dgx:nodes=2,gpus_per_node=8")), "tw", load_device("h100"),
                           load_device("cpu-server"))
    plan = _Plan(dlrm(n_tables=8, rows=10_000), cluster, "tw", ShardingOptions())
    assert np.bincount(plan.shards[2] // 8, minlength=2).tolist() == [4, 4]
    # one hot table (hotness 4, 1,000 rows) and four cold ones (hotness 1, 100,000 rows) on 2 workers: the
    # hot one alone carries as much lookup work as all four cold ones
    base = dlrm(n_tables=1, rows=1000)
    hot = base.tables[0].model_copy(update={"name": "hot", "hotness": 4})
    cold = [hot.model_copy(update={"name": f"c{i}", "rows": 100_000, "hotness": 1}) for i in range(4)]
    workload = base.model_copy(update={"tables": [hot, *cold]})
    table, _, owner = place_shards(workload, 2)
    assert owner[table == 0].tolist() == [0] and owner[table > 0].tolist() == [1, 1, 1, 1]


H1 = 16  # the test workload's first top layer: reads E = FIELDS x DIM pooled values and the bottom MLP's 8


@pytest.mark.parametrize(("build", "params", "r_fields", "r_first_layer"), [
    ("widedeep", {"n_tables": 26, "dim": 32, "top_mlp": [1024, 512]}, 26 * 32 + 1, 1024 + 1),
    ("deepfm", {"n_tables": 39, "dim": 16, "top_mlp": [400, 400]}, 39 * 16 + 1, 400 + 16 + 1),
    ("dnn", {"n_tables": 26, "dim": 64, "top_mlp": [1024, 512]}, 26 * 64, 1024),
    ("dnn", {"n_tables": 26, "dim": 64, "dense_features": 0, "top_mlp": [], "interaction": "sum"}, 26 * 64, 1),
    ("dlrm", {"n_tables": 26, "dim": 16, "bottom_mlp": [64, 16], "top_mlp": [256, 1], "interaction": "concat"},
     26 * 16, 256),
    ("lr", {"n_tables": 26}, 1, 0), ("fm", {"n_tables": 26, "dim": 16}, 17, 0),
    ("dlrm", {"n_tables": 26, "dim": 16, "bottom_mlp": [64, 16]}, 26 * 16, 0),
    ("dcn", {"n_tables": 26, "dim": 16}, 26 * 16, 0),
    ("deepfm", {"n_tables": 39, "dim": 16, "hotness": 2}, 39 * 16 + 1, 0),
])
def test_first_layer_partial_width_per_model(build: str, params: dict, r_fields: int, r_first_layer: int) -> None:
    """r per sample: fields' E (+1 first order), or the first layer's h1 (+ k + 1 DeepFM, + 1 W&D); 0 and a
    reason where the first layer's partial is not exact (LR, FM: no dense layer; DLRM's dots, DCN's cross,
    DeepFM's squares with multi-hot fields)."""
    import workloads

    wl = getattr(workloads, build)(**params)
    assert wl.partial_width == r_fields
    assert wl.first_layer_partial_width == r_first_layer
    assert bool(wl.first_layer_obstacle) == (r_first_layer == 0)


@pytest.mark.parametrize("variant", ["des", "des-rs", "des-a2a"])
def test_first_layer_partials_carry_h1_values_per_sample(variant: str) -> None:
    """des.partials and des.partials_grad move B x h1 values (the DNN's first top layer) instead of B x E."""
    n, wl = 4, workload()
    report = run(wl, variant, n, des_partial="first-layer")
    assert (report.summary["des_partial"], report.summary["partial_width"]) == ("first-layer", H1)
    share, big_b = (n - 1) / n, n * BATCH
    if variant == "des-a2a":  # to each of the n - 1 other workers, b x h1 values
        forward = backward = (n - 1) * BATCH * H1 * S
    else:
        forward, backward = (2 if variant == "des" else 1) * share * big_b * H1 * S, share * big_b * H1 * S
    assert np.allclose(per_worker(report, "des.partials"), forward)
    assert np.allclose(per_worker(report, "des.partials_grad"), backward)
    assert np.allclose(per_worker(report, "dense.allreduce"), 2 * share * wl.dense_params * S)
    fields = run(wl, variant, n).summary["bytes_by_category"]["des.partials"]
    assert report.summary["bytes_by_category"]["des.partials"] == pytest.approx(fields * H1 / (FIELDS * DIM))


def test_first_layer_moves_the_first_layer_flops_to_the_owners() -> None:
    """The owners' GEMM over all B samples (2 B E h1 FLOPs forward, twice that backward) is added to the
    partial ops; each worker's dense forward loses its b samples' 2 b E h1."""
    from simulator.compute import roofline

    n, wl = 4, workload()
    device = load_device("h100")
    fields, first = (run(wl, "des", n, des_partial=p).trace for p in ("fields", "first-layer"))

    def op_s(trace, name: str) -> float:
        return float(trace[(trace.op == name) & (trace["rank"] == 0)].eval("end_s - start_s").iloc[0])

    e, s, big_b = FIELDS * DIM, S, n * BATCH
    gemm = roofline.dense_forward_s(device, big_b * 2 * e * H1, e * H1 * s, big_b * (e + H1) * s, "fp32", 1)
    assert op_s(first, "des.partial_forward") - op_s(fields, "des.partial_forward") == pytest.approx(gemm)
    assert op_s(first, "des.partial_backward") - op_s(fields, "des.partial_backward") == pytest.approx(
        device.backward_factor * gemm)
    flops = BATCH * (wl.dense_flops_per_sample - 2 * e * H1)
    kernels = len(wl.linear_layers) + 1
    forward = roofline.dense_forward_s(device, flops, wl.dense_params * s, BATCH * wl.activation_bytes_per_sample,
                                      "fp32", kernels)
    assert op_s(first, "forward") == pytest.approx(forward)
    assert op_s(first, "backward") == pytest.approx(device.backward_factor * forward)


def test_auto_takes_the_smaller_partial_and_first_layer_is_refused_where_not_exact() -> None:
    from simulator.errors import SpecError

    small_h1 = run(workload(), "des", 2, des_partial="auto").summary  # h1 16 < E 48
    assert (small_h1["des_partial"], small_h1["partial_width"]) == ("first-layer", H1)
    wide = workload().model_copy(update={"top_mlp": [64, 1]})  # h1 64 > E 48
    chosen = run(wide, "des", 2, des_partial="auto").summary
    assert (chosen["des_partial"], chosen["partial_width"]) == ("fields", FIELDS * DIM)
    dot = workload().model_copy(update={"model": "dlrm", "interaction": "dot", "bottom_mlp": [DIM]})
    assert run(dot, "des", 2, des_partial="auto").summary["des_partial"] == "fields"
    with pytest.raises(SpecError, match=r"^des_partial: got 'first-layer'; allowed for dlrm \(dot\): fields, auto"):
        run(dot, "des", 2, des_partial="first-layer")


def test_the_registry_holds_every_strategy_once_with_what_it_needs() -> None:
    """Each registered strategy lowers a workload of its kind, reads the options it declares, needs servers
    exactly when it says so, and is listed by ``dessim list strategies``."""
    import dataclasses

    from simulator.options import StrategyOptions as Options
    from simulator.run.training import make_cluster
    from simulator.strategies import REGISTRY, STRATEGIES, lower
    from topologies import load_topology
    from workloads import load_workload

    assert tuple(REGISTRY) == STRATEGIES and len(set(STRATEGIES)) == len(STRATEGIES) == 13
    fabric = Fabric(load_topology("star:hosts=4"))
    fields = {f.name for f in dataclasses.fields(Options)}
    workloads = {"recommender": load_workload("dlrm-small", ["batch=64"]),
                 "classification": load_workload("classification:classes=1000,feature_dim=16,batch=4")}
    for name, strategy in REGISTRY.items():
        assert strategy.name == name and strategy.description and strategy.kind in workloads
        assert strategy.options is None or strategy.options in fields
        cluster = make_cluster(fabric, name, load_device("h100"), load_device("cpu-server"))
        assert (len(cluster.servers) > 0) == strategy.needs_servers
        lowered = lower(name, workloads[strategy.kind], cluster)
        assert len(lowered.graph.ops) > 0 and "worker" in lowered.memory
