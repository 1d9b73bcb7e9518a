"""One executor configuration: the local spawner and torchrun run the same ranks and count the same bytes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simulator.executor.run import Measurement, execute, execute_many, small_workload  # noqa: E402


def test_torchrun_counts_the_bytes_the_local_spawner_counts(tmp_path) -> None:
    """2 workers and 1 server under torchrun (three processes, rendezvous on localhost) vs the spawner."""
    torchrun = Path(sys.executable).with_name("torchrun")  # torch installs it next to the interpreter
    out = tmp_path / "run.json"
    subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "3", "-m", "simulator.executor.run",
                    "--model", "fm", "--strategy", "ps", "--servers", "1", "--steps", "2", "--batch", "16",
                    "--backend", "gloo", "--out", str(out)], check=True, capture_output=True, timeout=300)
    launched = json.loads(out.read_text())
    local = execute(small_workload("fm", 16), "ps", 2, 2, servers=1)
    assert (launched["workers"], launched["servers"]) == (2, 1)
    expected = {f"{c}@{r}": v for (c, r), v in local.bytes_per_step().items()}
    assert launched["bytes_per_step"] == pytest.approx(expected, rel=1e-12)
    assert launched["median_step_s"] > 0


def test_a_grid_shares_ranks_and_reports_each_configuration_apart() -> None:
    lr, dlrm = small_workload("lr", 16), small_workload("dlrm", 16)
    runs = execute_many([(lr, "des"), (dlrm, "des-a2a"), (lr, "dp")], 2, 3)
    assert [m.strategy for m in runs] == ["des", "des-a2a", "dp"]
    for m in runs:
        assert isinstance(m, Measurement) and m.step_s.shape == (2, 3) and (m.step_s > 0).all()
        assert m.median_step_s(warmup=1) == pytest.approx(np.median(m.step_s[:, 1:].max(axis=0)))
    # DP all-reduces whole tables: far more bytes than DES's IDs and partial results
    assert runs[2].bytes_per_step().sum() > 10 * runs[0].bytes_per_step().sum()
    assert set(runs[0].bytes_per_step().index.get_level_values("category")) == {
        "des.ids", "des.partials", "des.partials_grad", "dense.allreduce"}
    with pytest.raises(ValueError, match="PS and non-PS"):
        execute_many([(lr, "des"), (lr, "ps")], 2, 2)
    with pytest.raises(ValueError, match="strategy 'tw'"):
        execute(lr, "tw", 2, 2)


def test_step_statistics_skip_warmup_and_follow_the_slowest_worker() -> None:
    import pandas as pd

    step_s = np.array([[9.0, 1.0, 2.0, 3.0, 4.0], [9.0, 2.0, 1.0, 5.0, 1.0]])
    sync = Measurement("des", 2, 0, 5, pd.DataFrame(), step_s, pd.DataFrame())
    assert list(sync.measured_steps_s()) == [2.0, 2.0, 5.0, 4.0]  # per step, the slower worker
    assert sync.median_step_s() == 3.0
    assert sync.step_spread() == pytest.approx((4.25 - 2.0) / 3.0)
    asynchronous = Measurement("ps-async", 2, 1, 5, pd.DataFrame(), step_s, pd.DataFrame())
    assert sorted(asynchronous.measured_steps_s()) == [1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 4.0, 5.0]
    assert asynchronous.median_step_s() == 2.0


def test_unwaited_time_is_the_last_arrivals_and_repeats_keep_the_quietest_pass() -> None:
    """Two workers, steps 0 (warm-up) to 2. Per step the least over workers of a category (who arrives last
    waits for nobody), mean over the timed steps; the quietest of several passes is the one with the smallest
    median step. ``execute_many(..., repeats=2)`` returns one measurement per configuration."""
    import pandas as pd

    from simulator.executor.run import quietest

    ops = pd.DataFrame([(rank, step, category, seconds) for rank, step, category, seconds in [
        (0, 0, "des.ids", 9.0), (1, 0, "des.ids", 9.0),
        (0, 1, "des.ids", 1.0), (1, 1, "des.ids", 3.0), (0, 1, "compute.forward", 2.0), (1, 1, "compute.forward", 2.0),
        (0, 2, "des.ids", 5.0), (1, 2, "des.ids", 2.0), (0, 2, "compute.forward", 4.0), (1, 2, "compute.forward", 1.0),
        (2, 1, "des.ids", 0.0)]],  # a server rank's: not a worker's
        columns=["rank", "step", "category", "time_s"])
    m = Measurement("des", 2, 1, 3, pd.DataFrame(), np.ones((2, 3)), ops)
    assert m.unwaited().to_dict() == {"compute.forward": pytest.approx(1.5), "des.ids": pytest.approx(1.5)}
    passes = [Measurement("des", 1, 0, 3, pd.DataFrame(), np.array([[9.0, t, t]]), pd.DataFrame()) for t in (3, 1, 2)]
    assert quietest(passes) is passes[1]
    lr = small_workload("lr", 16)
    runs = execute_many([(lr, "des"), (lr, "dp")], 1, 2, repeats=2)
    assert [m.strategy for m in runs] == ["des", "dp"]
