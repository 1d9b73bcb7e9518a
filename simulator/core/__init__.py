"""The step graph and what runs it: ops and dependencies (stepgraph), the discrete-event engine that runs a
graph over a network and compute model (engine), and per-rank speed changes applied to a graph (stragglers)."""
