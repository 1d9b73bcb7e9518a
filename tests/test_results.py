"""Result tables and the typed step summary (``simulator.results.tables``)."""

import numpy as np
import pytest
from conftest import star_graph

from simulator.compute.roofline import load_device
from simulator.errors import SpecError
from simulator.network.fabric import Fabric
from simulator.results.tables import StepSummary, flat_summary
from simulator.run.training import make_cluster, simulate_step
from workloads import load_workload


def test_link_timeline_of_one_message_is_full_for_its_duration() -> None:
    """One 12.5 MB message h0 -> h1 on 100 Gb/s links: both links of its path run at 100% from its route's
    2 us of latency (the fluid model moves it on every link at once) to 1 ms + 2 us, and carry its bytes."""
    from simulator.network import make_network
    from simulator.network.schedule import Pattern, Schedule
    from simulator.results.tables import link_timeline

    fabric = Fabric(star_graph(2))
    network = make_network(fabric, "flow", record_rates=True)
    schedule = Schedule(2)
    schedule.add(Pattern.of(2, np.array([0]), np.array([1]), np.array([12.5e6])))
    network.start(schedule)
    network.env.run()
    timeline = link_timeline(fabric, network.core.link_segments(), 2e-3, bins=4)
    used = timeline.groupby(["src", "dst"]).bytes.sum()
    assert used.to_dict() == pytest.approx({("h0", "sw"): 12.5e6, ("sw", "h1"): 12.5e6})
    for hop in (timeline[timeline.src == "h0"], timeline[timeline.dst == "h1"]):  # 0.5 ms bins
        assert hop.util.to_numpy() == pytest.approx([1 - 2e-6 / 5e-4, 1, 2e-6 / 5e-4, 0])
    assert set(timeline.tier) == {"h->sw", "sw->h"}


def test_link_timeline_carries_the_link_table_bytes_and_never_exceeds_capacity() -> None:
    """A PS step on an oversubscribed leaf-spine, exact event order: per link, the timeline's bytes are the
    link table's and no bin is above 100%."""
    from simulator.compute.roofline import load_device
    from simulator.run.training import make_cluster, simulate_step
    from topologies import load_topology
    from workloads import load_workload

    cluster = make_cluster(Fabric(load_topology("leafspine16-oversub")), "ps", load_device("h100"),
                           load_device("cpu-server"))
    report = simulate_step(load_workload("dlrm-small"), cluster, "ps", "flow", record_rates=True, rate_tolerance=0)
    timeline = report.link_timeline(bins=40)
    carried = timeline.groupby(["src", "dst"]).bytes.sum()
    table = report.links.set_index(["src", "dst"]).bytes
    assert carried.to_numpy() == pytest.approx(table.loc[carried.index].to_numpy(), rel=1e-9)
    assert timeline.util.max() <= 1 + 1e-9 and timeline.util.max() > 0.99  # the uplinks saturate
    assert {"h->leaf", "leaf->spine", "spine->leaf", "leaf->h"} <= set(timeline.tier)
    with pytest.raises(SpecError, match="needs fidelity flow"):
        simulate_step(load_workload("dlrm-small"), cluster, "ps", "analytical").link_timeline()


def test_the_step_summary_is_typed_and_its_document_is_the_json() -> None:
    """Fields with units, nested models, DES's two fields only for DES, and summary[key] reading the JSON
    document; bytes on the wire equal the trace's bytes sent (per step)."""
    cluster = make_cluster(Fabric(star_graph(4)), "des", load_device("h100"), load_device("cpu-server"))
    report = simulate_step(load_workload("dlrm-small", ["batch=64"]), cluster, "des", "analytical", steps=2)
    summary = report.summary
    assert isinstance(summary, StepSummary) and summary.workers == 4 and summary.steps == 2
    assert summary.bytes_on_wire == pytest.approx(report.trace.bytes_sent.sum() / 2, rel=1e-12)
    assert summary.bytes_per_worker.max >= summary.bytes_per_worker.mean > 0
    assert summary.worker_step_time_s.min <= summary.worker_step_time_s.max
    document = summary.document()
    assert document["des_partial"] == summary["des_partial"] == "fields"
    assert summary["bytes_per_worker"] == {"max": summary.bytes_per_worker.max, "mean": summary.bytes_per_worker.mean}
    assert StepSummary.model_validate(document) == summary
    assert flat_summary(summary) == flat_summary(document)
    dp = simulate_step(load_workload("dlrm-small", ["batch=64"]), make_cluster(
        Fabric(star_graph(4)), "dp", load_device("h100"), load_device("cpu-server")), "dp", "analytical").summary
    assert "des_partial" not in dp.document() and "des_partial" not in dp
    with pytest.raises(KeyError):
        dp["des_partial"]


def test_tables_are_written_whole_or_not_at_all(tmp_path) -> None:
    import pandas as pd

    from simulator.results.tables import write_table

    frame = pd.DataFrame({"link": [0, 1], "bytes": [1.5, 2.5]})
    for name in ("t.parquet", "t.csv"):
        write_table(frame, tmp_path / name)
        read = pd.read_parquet(tmp_path / name) if name.endswith("parquet") else pd.read_csv(tmp_path / name)
        pd.testing.assert_frame_equal(read, frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.parquet"]  # no .partial left
    with pytest.raises(SpecError, match=r"^--links-out: got '.*t\.txt'; must end in \.csv or \.parquet"):
        write_table(frame, tmp_path / "t.txt", "--links-out")
