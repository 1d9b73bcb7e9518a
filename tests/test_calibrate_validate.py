"""``dessim calibrate`` and ``dessim validate``: the fits recover known parameters, a profile round-trips
into the simulator, and the validation grid's bytes match the executor's counts exactly."""

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from conftest import run_cli as run  # noqa: E402

from simulator.calibration.calibrate import COLLECTIVES, fit_collectives, fit_compute  # noqa: E402
from simulator.calibration.validation import local_fabric  # noqa: E402
from simulator.compute.roofline import CalibrationProfile, load_calibration, load_device, op_time_s  # noqa: E402


def test_collective_costs_fitted_to_calls_the_simulator_times_are_the_costs_they_were_made_with() -> None:
    """Points timed by the simulator itself, each call lowered as a strategy lowers it (``collective``; all-to-all
    and p2p as ``exchange``) with known per-call costs on the loopback star: the fit returns those costs."""
    from simulator.compute.roofline import CollectiveCost
    from simulator.core.engine import Engine
    from simulator.core.stepgraph import StepGraph
    from simulator.network import make_network
    from simulator.strategies.base import Cluster, collective, exchange

    world = 4
    truth = {op: CollectiveCost(call_us=100.0 + 50 * i, ns_per_byte=0.5 + 0.25 * i) for i, op in enumerate(COLLECTIVES)}
    ranks = np.arange(world)
    rows = []
    for op, algo in COLLECTIVES.items():
        cluster = Cluster(local_fabric(world), ranks, load_device("cpu-server"), collective_algorithm=algo,
                          collective_costs=truth)
        for size in (4096.0, 262144.0, 4194304.0):
            graph = StepGraph(world, ranks)
            if op == "alltoall":  # every rank sends each other one its buffer's share
                src, dst = np.repeat(ranks, world), np.tile(ranks, world)
                exchange(graph, op, op, src, dst, np.full(world * world, size / world), (), 0, cost=truth[op])
            elif op == "p2p":  # every rank sends its buffer to the next
                exchange(graph, op, op, ranks, np.roll(ranks, -1), np.full(world, size), (), 0, cost=truth[op])
            else:
                collective(graph, cluster, op, op, size, ranks, (), 0)
            time_s = Engine(graph, make_network(cluster.fabric, "analytical")).run().makespan_s
            buffer = size * (world - 1) / world if op == "alltoall" else size
            rows.append({"group": "collective", "op": op, "world": world, "size_bytes": size, "buffer_bytes": buffer,
                         "time_s": time_s})
    fitted, points = fit_collectives(pd.DataFrame(rows))
    for op, cost in truth.items():
        assert fitted[op]["call_us"] == pytest.approx(cost.call_us, rel=1e-6), op
        assert fitted[op]["ns_per_byte"] == pytest.approx(cost.ns_per_byte, rel=1e-6), op
    assert np.allclose(points.predicted_s, points.time_s, rtol=1e-9)


def test_compute_fit_recovers_launch_efficiencies_lookup_cost_and_backward_factor() -> None:
    """Points made with the simulator's own cost functions and known parameters: the fit returns them."""
    from simulator.compute.roofline import embedding_lookup_s

    device = load_device("cpu-server")
    truth = device.model_copy(update={"launch_overhead_us": 12.0, "eff_flops": 0.02, "eff_gather": 0.004,
                                      "eff_mem": 0.05, "lookup_ns": 30.0})
    rows = []
    for n in (64, 256, 512):
        flops = 2.0 * n**3
        rows.append({"group": "gemm", "op": "matmul", "flops": flops, "time_s": op_time_s(truth, flops, 0.0)})
    for width in (1, 16, 64):
        for lookups in (1e3, 1e4, 1e5):
            unique, pooled = 0.8 * lookups, lookups / 4
            rows.append({"group": "gather", "op": "lookup+pool", "lookups": lookups, "unique_rows": unique,
                         "pooled_rows": pooled, "row_bytes": 4.0 * width,
                         "time_s": embedding_lookup_s(truth, lookups, unique, 4.0 * width, pooled)})
    for k in (1e4, 1e5, 1e6):
        rows.append({"group": "stream", "op": "add", "bytes": 3 * k, "time_s": op_time_s(truth, 0.0, 3 * k)})
    rows.append({"group": "backward", "op": "linear", "time_s": 1e-3, "both_s": 2.4e-3})
    fitted, points = fit_compute(pd.DataFrame(rows), device)
    for key in ("launch_overhead_us", "eff_flops", "eff_gather", "eff_mem", "lookup_ns"):
        assert fitted[key] == pytest.approx(getattr(truth, key), rel=1e-6), key
    assert fitted["backward_factor"] == pytest.approx(1.4)
    assert np.allclose(points.predicted_s, points.time_s, rtol=1e-6)


def test_predicted_breakdown_covers_each_workers_step_and_prices_the_id_handling() -> None:
    """The executor's ranks are synchronous programs: serial in the prediction, each worker's op times add up
    to its step; ``id_ns`` prices DES's scan of the B m gathered IDs and PS's dedup of b m."""
    from simulator.calibration.validation import predict
    from simulator.executor.run import small_workload

    device = load_device("cpu-server").model_copy(update={"id_ns": 10.0})
    workload = small_workload("dlrm", 256)
    m = workload.ids_per_sample
    for strategy, servers, ids in (("des", 0, 2 * 256 * m), ("ps", 1, 256 * m), ("dp", 0, 0)):
        predicted = predict(workload, strategy, 2, servers, 4, device)
        workers = predicted.breakdown.drop([c for c in predicted.breakdown.index if c.startswith("server.")])
        assert workers.sum() == pytest.approx(predicted.step_s, rel=0.02), strategy
        assert predicted.breakdown.get("compute.ids", 0.0) == pytest.approx(
            ids * 10e-9 + device.launch_overhead_us * 1e-6 if ids else 0.0, rel=1e-9), strategy


def test_profile_for_ranks_picks_the_closest_rank_count() -> None:
    profile = CalibrationProfile(link_efficiency=0.5, ranks={2: {"link_efficiency": 0.2}, 8: {"link_efficiency": 0.1}})
    assert profile.for_ranks(3).link_efficiency == 0.2
    assert profile.for_ranks(6).link_efficiency == 0.1
    assert profile.for_ranks(4).link_efficiency == 0.2  # a tie (ratio 2 either way) goes to the smaller count
    assert CalibrationProfile(link_efficiency=0.5).for_ranks(4).link_efficiency == 0.5


def test_calibrate_writes_a_profile_the_simulator_loads(capsys, tmp_path) -> None:
    out = tmp_path / "profile.json"
    code, printed, _ = run(capsys, "calibrate", "--worlds", "2", "--models", "lr", "--batches", "16,32", "--steps",
                           "2", "--repeats", "1", "--out", str(out))
    assert code == 0
    assert "Fit quality" in printed and "allreduce" in printed and "compute.ids" in printed
    profile = load_calibration(out)
    device = profile.devices["cpu-server"]
    assert device.launch_overhead_us > 0 and 0 < device.eff_flops <= 1 and device.backward_factor > 0
    assert device.id_ns > 0 and profile.server is not None and profile.server.request_us is not None
    assert set(profile.collectives) == {"allreduce", "allgather", "reducescatter", "alltoall", "p2p"}
    assert set(profile.ranks) == {2}
    doc = json.loads(out.read_text())
    measured = pd.DataFrame(doc["meta"]["points"])
    assert set(measured.op) >= {"allreduce", "p2p", "matmul", "lookup+pool", "compute.forward", "server.update"}
    assert set(measured[measured.group == "step"].batch) == {16, 32}  # fitted on these, never on validate's
    # the collectives' per-call costs refitted to the steps' own calls (lr's DES: ID all-gather and partials)
    assert {"des.ids", "dense.allreduce"} <= set(measured[measured.group == "step collective"].op)
    assert (measured.time_s >= 0).all()


def test_the_step_fit_recovers_known_per_op_costs() -> None:
    """A synthetic executor: per-op times the simulator itself prices with known terms (worker and server),
    at two batch sizes. The fit, started elsewhere, recovers every term within 1%."""
    from simulator.calibration.stepfit import FITTED, FITTED_SERVER, Observed, fit_device, predicted_breakdown
    from simulator.executor.run import small_workload

    preset = load_device("cpu-server")
    truth = preset.model_copy(update={"launch_overhead_us": 40.0, "eff_flops": 0.01, "eff_mem": 0.05,
                                      "eff_gather": 0.008, "lookup_ns": 20.0, "id_ns": 15.0, "dedup_ns": 60.0,
                                      "backward_factor": 2.5, "step_overhead_us": 300.0})
    server = {"request_us": 150.0, "eff_gather": 0.004, "lookup_ns": 35.0}
    observed = []
    for model, strategy, servers in (("dlrm", "des", 0), ("lr", "ps", 1), ("deepfm", "dp", 0), ("fm", "des-a2a", 0)):
        for batch in (256, 4096):
            o = Observed(small_workload(model, batch), strategy, 2, servers, 2, pd.Series(dtype=float), 1.0)
            o.breakdown = predicted_breakdown(o, truth, truth.model_copy(update=server))
            o.step_s = float(o.breakdown.sum())
            observed.append(o)
    start = preset.model_copy(update={"launch_overhead_us": 10.0, "eff_flops": 0.02, "eff_mem": 0.1,
                                      "eff_gather": 0.02, "lookup_ns": 5.0, "id_ns": 1.0, "dedup_ns": 5.0,
                                      "backward_factor": 2.0, "step_overhead_us": 50.0, "request_us": 10.0})
    fitted, fitted_server, rows = fit_device(observed, start)
    for name in FITTED:
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=0.01), name
    for name in FITTED_SERVER:
        assert fitted_server[name] == pytest.approx(server[name], rel=0.01), name
    assert np.allclose(rows.predicted_s, rows.measured_s, rtol=1e-3, atol=1e-9)


def _pandas_per_step(times: pd.DataFrame, cluster, steps: int) -> pd.Series:
    """``validation.per_step`` as a pandas groupby over a table of (rank, category, step, time_s): the
    straightforward computation the numpy one must equal."""
    from simulator.calibration.validation import WARMUP_STEPS

    timed = times[times.step >= WARMUP_STEPS]
    worker = timed[timed["rank"].isin(cluster.workers)]
    server = timed[timed["rank"].isin(cluster.servers) & timed.category.str.startswith("server.")]
    per = steps - WARMUP_STEPS
    return pd.concat([worker.groupby("category").time_s.sum() / per / cluster.n_workers,
                      server.groupby("category").time_s.sum() / per / max(len(cluster.servers), 1)]).sort_index()


def test_the_step_fit_equals_the_straightforward_fit_with_fewer_lowerings(monkeypatch) -> None:
    """The fit's model, priced without pandas and once per distinct device a configuration reads, against the
    straightforward one (every residual re-lowers every configuration and sums its compute ops by a pandas
    groupby): the same fitted fields and rows, bit for bit, from fewer lowerings (PS-less configurations never
    read the server's fields; eff_mem starts capped at 1)."""
    from simulator.calibration import stepfit
    from simulator.calibration.validation import executor_step
    from simulator.executor.run import small_workload

    preset = load_device("cpu-server")
    truth = preset.model_copy(update={"launch_overhead_us": 40.0, "eff_flops": 0.01, "eff_mem": 0.05, "id_ns": 15.0,
                                      "dedup_ns": 60.0, "step_overhead_us": 300.0, "request_us": 150.0})
    observed = []
    for model, strategy, servers in (("dlrm", "des", 0), ("lr", "ps", 1)):
        o = stepfit.Observed(small_workload(model, 64), strategy, 2, servers, 2, pd.Series(dtype=float), 1.0)
        o.breakdown = stepfit.predicted_breakdown(o, truth)
        o.step_s = float(o.breakdown.sum())
        observed.append(o)
    start = preset.model_copy(update={"launch_overhead_us": 10.0, "eff_mem": 1.0, "id_ns": 1.0, "dedup_ns": 5.0,
                                      "step_overhead_us": 50.0, "request_us": 10.0})

    def breakdown(o: stepfit.Observed, worker: object, server: object) -> pd.Series:
        steps = min(o.steps, 2)
        graph, cluster = executor_step(o.workload, o.strategy, o.workers, o.servers, steps, worker,
                                       server_device=server)
        ops = [op for op in graph.ops if op.kind == "compute"]
        counts = [len(op.ranks) for op in ops]
        times = pd.DataFrame({"rank": np.concatenate([op.ranks for op in ops]),
                              "category": np.repeat([op.category for op in ops], counts),
                              "step": np.repeat([op.step for op in ops], counts),
                              "time_s": np.concatenate([op.duration_s for op in ops])})
        return stepfit.own_categories(_pandas_per_step(times, cluster, steps))

    def straightforward(observed: list, keys: list, device: object) -> object:
        def predicted(x: np.ndarray) -> np.ndarray:
            worker, server = stepfit._devices(device, x)
            calls.append(len(observed))
            return np.concatenate([breakdown(o, worker, server).reindex(k, fill_value=0.0).to_numpy()
                                   for o, k in zip(observed, keys, strict=True)])
        return predicted

    real, calls, priced = stepfit._compute_seconds, [], []
    monkeypatch.setattr(stepfit, "_compute_seconds", lambda *args: priced.append(1) or real(*args))
    fast = stepfit.fit_device(observed, start, iterations=2)
    monkeypatch.setattr(stepfit, "_predictor", straightforward)
    plain = stepfit.fit_device(observed, start, iterations=2)
    assert fast[0] == plain[0] and fast[1] == plain[1]
    assert fast[2].equals(plain[2])
    assert len(priced) < 0.9 * sum(calls)


def test_a_jittered_prediction_equals_its_draws_lowered_and_timed_one_by_one() -> None:
    """``predict`` lowers a step once for all its jitter draws and times them from the engine's arrays: the same
    step time and breakdown, bit for bit, as lowering each draw apart (``executor_step``'s seed) and timing it
    from the engine's trace with pandas."""
    from simulator.calibration.validation import JITTER_DRAWS, WARMUP_STEPS, executor_step, predict
    from simulator.core.engine import Engine
    from simulator.executor.run import small_workload
    from simulator.network import make_network

    device = load_device("cpu-server").model_copy(update={"id_ns": 10.0})
    profile = CalibrationProfile(collectives={"allgather": {"call_us": 500.0, "ns_per_byte": 1.0}}, jitter_sigma=0.3)
    workload = small_workload("dlrm", 16)
    for strategy, servers in (("des", 0), ("ps-async", 1)):
        step_s, breakdowns = [], []
        for seed in range(JITTER_DRAWS):
            graph, cluster = executor_step(workload, strategy, 2, servers, 3, device, profile, cores=2, seed=seed)
            trace = Engine(graph, make_network(cluster.fabric, "analytical")).run().trace
            ends = trace[trace["rank"].isin(cluster.workers)].pivot_table(index="rank", columns="step", values="end_s",
                                                                          aggfunc="max").to_numpy()
            step_s.append(np.diff(ends, axis=1, prepend=0.0)[:, WARMUP_STEPS:].ravel() if strategy == "ps-async"
                          else np.diff(ends.max(axis=0), prepend=0.0)[WARMUP_STEPS:])
            timed = trace.assign(time_s=trace.end_s - trace.start_s, category=trace.category.astype(str))
            breakdowns.append(_pandas_per_step(timed, cluster, 3))
        predicted = predict(workload, strategy, 2, servers, 3, device, profile, cores=2)
        assert predicted.step_s == float(np.median(np.concatenate(step_s))), strategy
        assert predicted.breakdown.equals(pd.concat(breakdowns, axis=1).fillna(0.0).mean(axis=1)), strategy


def test_the_in_step_collective_fit_recovers_known_per_call_costs() -> None:
    """A synthetic executor whose collectives cost known amounts per call and per byte on top of the nominal
    loopback (the unwaited times the simulator itself predicts with them). The fit, started from other
    (microbenchmark) costs, recovers each called op's within 1%; p2p, which no step calls collectively,
    keeps its starting cost; PS runs (whose calls wait on the servers) are left out."""
    from simulator.calibration.stepfit import Observed, fit_collectives_in_step
    from simulator.calibration.validation import predict
    from simulator.compute.roofline import CalibrationProfile
    from simulator.executor.run import small_workload

    device = load_device("cpu-server")
    truth = {"allreduce": {"call_us": 700.0, "ns_per_byte": 0.6},
             "allgather": {"call_us": 900.0, "ns_per_byte": 1.5},
             "alltoall": {"call_us": 400.0, "ns_per_byte": 2.0},
             "reducescatter": {"call_us": 800.0, "ns_per_byte": 0.9}}
    start = {op: {"call_us": 100.0, "ns_per_byte": 0.1} for op in [*truth, "p2p"]}
    observed = []
    for model, strategy, servers in (("dlrm", "des", 0), ("deepfm", "des-rs", 0), ("fm", "des-a2a", 0),
                                     ("widedeep", "dp", 0), ("lr", "ps", 1)):
        for batch in (256, 4096):
            o = Observed(small_workload(model, batch), strategy, 2, servers, 2, pd.Series(dtype=float), 0.01)
            o.unwaited = predict(o.workload, strategy, 2, servers, 2, device, CalibrationProfile(collectives=truth),
                                 cores=2).breakdown
            observed.append(o)
    fitted, rows = fit_collectives_in_step(observed, device, device, start, cores=2)
    for op, costs in truth.items():
        assert fitted[op] == pytest.approx(costs, rel=0.01), op
    assert fitted["p2p"] == start["p2p"]
    assert "ps" not in set(rows.strategy) and {"dense.allreduce", "des.ids", "sparse.allreduce"} <= set(rows.category)
    assert np.allclose(rows.predicted_s, rows.measured_s, rtol=1e-6)


def test_the_jitter_fit_recovers_a_known_sigma() -> None:
    """A synthetic executor whose ranks' compute jitters by exp(0.3 Z) per step: its collectives' times are
    what the simulator predicts with that jitter, their unwaited times those without. The fit finds 0.3 (within
    2%) from the waiting alone; with no waiting it finds 0. PS runs and one-worker runs are not used."""
    from simulator.calibration.stepfit import Observed, fit_jitter
    from simulator.calibration.validation import predict
    from simulator.compute.roofline import CalibrationProfile
    from simulator.executor.run import small_workload

    device = load_device("cpu-server")
    costs = {"allreduce": {"call_us": 700.0, "ns_per_byte": 0.6}, "allgather": {"call_us": 500.0, "ns_per_byte": 1.0}}
    observed = []
    for model, strategy in (("dlrm", "des"), ("fm", "dp"), ("widedeep", "des")):
        o = Observed(small_workload(model, 1024), strategy, 2, 0, 2, pd.Series(dtype=float), 0.01)
        jittered, still = (predict(o.workload, strategy, 2, 0, 2, device, CalibrationProfile(collectives=costs,
                                                                                               jitter_sigma=sigma),
                                   cores=2).breakdown for sigma in (0.3, None))
        o.breakdown, o.unwaited = jittered, still
        observed.append(o)
    assert fit_jitter(observed, device, device, costs, cores=2) == pytest.approx(0.3, rel=0.02)
    for o in observed:
        o.breakdown = o.unwaited
    assert fit_jitter(observed, device, device, costs, cores=2) == 0.0


def test_validate_json_rows_have_zero_byte_error(capsys, tmp_path) -> None:
    table = tmp_path / "rows.csv"
    code, out, _ = run(capsys, "validate", "--models", "lr,dlrm", "--strategies", "des,ps", "--worlds", "2",
                       "--steps", "3", "--batch", "32", "--repeats", "2", "--json", "--out", str(table))
    assert code == 0
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == 4
    assert {(r["model"], r["strategy"]) for r in rows} == {("lr", "des"), ("dlrm", "des"), ("lr", "ps"),
                                                           ("dlrm", "ps")}
    for row in rows:
        assert row["bytes_error"] == 0.0 and row["predicted_bytes"] == row["measured_bytes"] > 0
        assert row["measured_step_s"] > 0 and row["predicted_step_s"] > 0
        assert row["step_time_error"] == pytest.approx(row["predicted_step_s"] / row["measured_step_s"] - 1)
        assert row["servers"] == (1 if row["strategy"] == "ps" else 0)
        assert row["measured_spread"] >= 0
        # the breakdown: a worker's measured categories add up to its mean step (the step time is the median
        # of the slowest worker's, so only roughly); the simulator has every category the executor times
        measured = {c: m for c, (_, m) in row["breakdown"].items() if not c.startswith("server.")}
        assert sum(measured.values()) == pytest.approx(row["measured_step_s"], rel=0.5)
        expected = {"compute.forward", "compute.backward", "compute.update", "dense.allreduce"}
        expected |= {"compute.ids", "compute.partial", "des.ids", "des.partials", "des.partials_grad"} if (
            row["strategy"] == "des") else {"compute.ids", "compute.lookup", "sparse.pull", "sparse.push",
                                            "server.lookup", "server.update"}
        assert expected <= {c for c, (_, m) in row["breakdown"].items() if m > 0}
        assert expected - {"compute.ids"} <= {c for c, (p, _) in row["breakdown"].items() if p > 0}
    assert len(pd.read_csv(table)) == 4


def test_validate_table_ends_with_mean_and_max_error(capsys) -> None:
    code, out, _ = run(capsys, "validate", "--models", "fm", "--strategies", "des-rs", "--worlds", "2", "--steps",
                       "2", "--batch", "16", "--repeats", "1", "--breakdown")
    assert code == 0
    assert "Predicted vs measured (uncalibrated)" in out
    assert "Where the step goes" in out and "compute.partial" in out and "des.partials_grad" in out
    summary, hint = out.strip().splitlines()[-2:]
    assert summary.startswith("bytes error: max 0") and "over 1 runs" in summary and "spread" in summary
    assert hint.startswith("uncalibrated: the ranks are modelled as the cpu-server datasheet")


@pytest.mark.parametrize(("args", "field"), [
    (["validate", "--worlds", "0"], "worlds: got '0'"),
    (["validate", "--worlds", "2,x"], "worlds: got '2,x'"),
    (["validate", "--models", "lr,gpt"], "models: got 'gpt'"),
    (["validate", "--strategies", "tw"], "strategies: got 'tw'"),
    (["validate", "--steps", "1"], "steps: got 1"),
    (["validate", "--repeats", "0"], "repeats: got 0"),
    (["calibrate", "--repeats", "101"], "repeats: got 101"),
    (["validate", "--out", "rows.txt"], "out: got 'rows.txt'"),
    (["validate", "--profile", "missing.json"], "calibration: got 'missing.json'"),
    (["calibrate", "--backend", "mpi"], "backend: got 'mpi'"),
    (["calibrate", "--out", "profile.yaml"], "out: got 'profile.yaml'"),
    (["calibrate", "--timeout-s", "0"], "timeout-s: got 0.0"),
    (["validate", "--timeout-s", "-5"], "timeout-s: got -5.0"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args: list[str], field: str) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and field in err


def test_collective_fit_sets_a_cost_too_small_to_see_to_zero() -> None:
    """Points a pure per-byte cost explains (the best call cost would be negative): the call cost is 0 and
    the per-byte cost is refitted alone, never negative."""
    rows = [{"group": "collective", "op": "allreduce", "world": 2, "size_bytes": s, "buffer_bytes": s,
             "time_s": s * 2e-9} for s in (1e5, 1e6, 1e7)]
    fitted, _ = fit_collectives(pd.DataFrame(rows))
    assert fitted["allreduce"]["call_us"] == 0.0 and 1.0 < fitted["allreduce"]["ns_per_byte"] < 2.0


def test_every_model_and_strategy_counts_exactly_the_predicted_bytes() -> None:
    """The whole grid at 2 workers (PS: plus 1 server), small batches: every (category, rank) count equals
    the simulator's prediction for the same workload and IDs."""
    from simulator.calibration.validation import validate
    from simulator.executor.run import MODELS, RECOMMENDER_STRATEGIES, RECOMMENDERS, STRATEGIES

    rows = validate(MODELS, STRATEGIES, [2], steps=2, batch_per_worker=32, repeats=1)
    assert len(rows) == len(RECOMMENDERS) * len(RECOMMENDER_STRATEGIES) + 2  # + xc: mp-fc, mp-fc-knn
    assert (rows.bytes_error == 0).all(), rows[rows.bytes_error != 0]
    assert (rows.measured_bytes > 0).all()
    by = rows.set_index(["model", "strategy"]).measured_bytes
    for model in RECOMMENDERS:  # DP moves whole tables; DES only IDs and partial results
        assert by[(model, "dp")] > by[(model, "des")]


def test_a_failed_run_keeps_the_rows_already_measured(capsys, tmp_path, monkeypatch) -> None:
    """The PS ranks fail after the DES ones finished: exit 1 with one line naming the cause, and the DES row
    is in --out."""
    import simulator.executor.run as executor_run
    from simulator.errors import ExecutorError

    real = executor_run.execute_many

    def failing_for_ps(configs: list, *args: object, **kwargs: object) -> list:
        if configs[0][1] == "ps":
            raise ExecutorError("rank 2 died (signal SIGKILL)")
        return real(configs, *args, **kwargs)

    monkeypatch.setattr(executor_run, "execute_many", failing_for_ps)
    table = tmp_path / "rows.csv"
    code, _, err = run(capsys, "validate", "--models", "lr", "--strategies", "des,ps", "--worlds", "2", "--steps",
                       "2", "--batch", "16", "--repeats", "1", "--out", str(table))
    assert code == 1
    assert err.strip().splitlines()[-1] == "dessim: run failed: rank 2 died (signal SIGKILL)"
    assert "wrote the 1 finished runs" in err
    rows = pd.read_csv(table)
    assert list(rows.strategy) == ["des"] and rows.bytes_error.iloc[0] == 0
