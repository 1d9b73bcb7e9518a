"""A simulated trace as Chrome / Perfetto trace-event JSON (opens in ui.perfetto.dev or chrome://tracing).

One process per rank (``pid`` = rank, named ``rank N``), one thread per stream (``compute``, ``comm``, a PS
server's ``server``, ...). Every op of the trace is a complete event (``ph: "X"``, ``ts`` and ``dur`` in
microseconds) named after the op, with its category and bytes as ``args``. Each communication op is also
a flow (``ph: "s"`` on the rank that starts it first, ``"t"`` on the others, ``"f"`` on the last): Perfetto
draws the arrows that tie one collective's slices across ranks together.
Format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

US_PER_S = 1e6


def trace_events(trace: pd.DataFrame, label: str = "dessim") -> dict:
    """The trace-event document of ``trace`` (``StepReport.trace``: rank, op, kind, category, step, start_s,
    end_s, bytes_sent, bytes_received, stream); ``label`` names the run in its metadata."""
    streams = sorted(trace.stream.astype(str).unique(), key=lambda s: (s != "compute", s != "comm", s))
    tid = {stream: i for i, stream in enumerate(streams)}
    events: list[dict] = []
    for rank in sorted(trace["rank"].unique()):
        events.append({"ph": "M", "name": "process_name", "pid": int(rank), "args": {"name": f"rank {rank}"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": int(rank), "args": {"sort_index": int(rank)}})
        for stream in trace[trace["rank"] == rank].stream.astype(str).unique():
            events.append({"ph": "M", "name": "thread_name", "pid": int(rank), "tid": tid[stream],
                           "args": {"name": stream}})
    rows = trace.assign(ts=trace.start_s * US_PER_S, dur=(trace.end_s - trace.start_s) * US_PER_S,
                        op_id=trace.groupby(["op", "step"], observed=True).ngroup())
    for row in rows.itertuples(index=False):
        events.append({"ph": "X", "name": str(row.op), "cat": str(row.category), "ts": row.ts, "dur": row.dur,
                       "pid": int(row.rank), "tid": tid[str(row.stream)],
                       "args": {"kind": str(row.kind), "step": int(row.step), "bytes_sent": row.bytes_sent,
                                "bytes_received": row.bytes_received}})
    comm = rows[rows.kind != "compute"].sort_values(["op_id", "ts", "rank"])
    for op_id, group in comm.groupby("op_id"):
        if len(group) < 2:
            continue
        for i, row in enumerate(group.itertuples(index=False)):
            phase = "s" if i == 0 else ("f" if i == len(group) - 1 else "t")
            events.append({"ph": phase, "name": str(row.op), "cat": str(row.category), "id": int(op_id),
                           "ts": row.ts, "pid": int(row.rank), "tid": tid[str(row.stream)], "bp": "e"})
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"generator": "dessim", "run": label}}


def write_trace_events(trace: pd.DataFrame, path: str | Path, label: str = "dessim") -> None:
    """Write ``trace_events(trace)`` as JSON to ``path``."""
    Path(path).write_text(json.dumps(trace_events(trace, label)))
