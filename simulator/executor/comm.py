"""The one instrumented communicator every executor strategy talks through.

It wraps torch.distributed and counts, per rank and per category (the simulator's names:
``sparse.pull``, ``des.partials``, ...), the payload bytes sent and received and the wall time spent.

Byte convention, the simulator's reference algorithms (nccl-tests' bus bytes), so that predicted and
measured counts can be compared exactly:
- all-reduce of S bytes: 2(N-1)/N x S sent and received per rank (ring);
- all-gather to S bytes: (N-1)/N x S; reduce-scatter of S bytes: (N-1)/N x S (ring);
- all-to-all and point-to-point: exactly the bytes addressed to other ranks (self-copies are free).
Counts are computed from the tensors actually passed, never estimated; metadata (the sizes an uneven
all-to-all exchanges first) is not payload and is not counted. One rank has no network: its collectives
return their input without a call (the simulator skips them too; gloo would spend ~0.2 ms a call).
"""

from __future__ import annotations

import functools
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from simulator.executor import tensors
from simulator.executor.timing import StepTimer

# torch >= 2.13 renamed these two (the old names warn); older releases only have the old ones.
_REDUCE_SCATTER = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_ALL_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


Tensors = torch.Tensor | list[torch.Tensor]
Method = TypeVar("Method", bound=Callable[..., Any])


def _listed(tensors: Tensors) -> list[torch.Tensor]:
    return tensors if isinstance(tensors, list) else [tensors]


def payload_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _whole_call(category_at: int) -> Callable[[Method], Method]:
    """Time a Communicator method's whole call under its category (argument ``category_at``) on the step
    timer: the host work around the transfer (building requests, allocating buffers) is the call's, as in
    the microbenchmarks that calibrate a call's cost."""

    def wrap(method: Method) -> Method:
        @functools.wraps(method)
        def timed(self: Communicator, *args: Any, **kwargs: Any) -> Any:
            category = kwargs.get("category", args[category_at] if len(args) > category_at else None)
            with self.timer.op(category or "metadata"):
                return method(self, *args, **kwargs)
        return timed  # type: ignore[return-value]
    return wrap


class Communicator:
    """Collectives and point-to-point transfers on a process group, with byte and time counters.

    Every tensor it is given must be on the executor's device (``tensors.device()``): anything else is a
    ValueError naming the category, before any rank sends. Each call is timed under its category on
    ``timer`` (shared by a rank's communicators: pass ``timer``), which the training loops also time their
    compute phases on."""

    def __init__(self, group: dist.ProcessGroup | None = None, timer: StepTimer | None = None) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.timer = timer or StepTimer()
        self.sent: dict[str, float] = defaultdict(float)
        self.received: dict[str, float] = defaultdict(float)
        self.time_s: dict[str, float] = defaultdict(float)

    def counters(self) -> dict[str, dict[str, float]]:
        """Per category: bytes sent, bytes received and seconds spent on this rank."""
        return {c: {"bytes_sent": self.sent[c], "bytes_received": self.received[c], "time_s": self.time_s[c]}
                for c in sorted(set(self.sent) | set(self.received) | set(self.time_s))}

    def barrier(self) -> None:
        """Wait for every rank (no payload; used to line up step timings)."""
        dist.barrier(group=self.group)

    def reset(self) -> None:
        self.sent.clear()
        self.received.clear()
        self.time_s.clear()

    def check(self, tensors_in: Tensors, category: str | None) -> None:
        """A ValueError unless every tensor is on the executor's device."""
        for t in _listed(tensors_in):
            if t.device != tensors.device():
                raise ValueError(f"{category or 'metadata'}: a tensor on {t.device} was given to the communicator;"
                                 f" the executor runs on {tensors.device()}")

    @contextmanager
    def _timed(self, category: str, sent: float, received: float) -> Iterator[None]:
        started = time.perf_counter()
        with self.timer.op(category):
            yield
        self.time_s[category] += time.perf_counter() - started
        self.sent[category] += sent
        self.received[category] += received

    @_whole_call(1)
    def all_reduce(self, tensor: torch.Tensor, category: str) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place."""
        self.check(tensor, category)
        if self.world == 1:
            return tensor
        moved = 2 * (self.world - 1) / self.world * payload_bytes(tensor)
        with self._timed(category, moved, moved):
            dist.all_reduce(tensor, group=self.group)
        return tensor

    @_whole_call(1)
    def all_gather(self, tensor: torch.Tensor, category: str) -> torch.Tensor:
        """Every rank's ``tensor`` (same shape on all ranks), concatenated along dim 0 in rank order."""
        self.check(tensor, category)
        if self.world == 1:
            return tensor
        out = tensors.empty(self.world * tensor.shape[0], *tensor.shape[1:], dtype=tensor.dtype)
        moved = (self.world - 1) * payload_bytes(tensor)
        with self._timed(category, moved, moved):
            _ALL_GATHER(out, tensor.contiguous(), group=self.group)
        return out

    @_whole_call(1)
    def reduce_scatter(self, tensor: torch.Tensor, category: str) -> torch.Tensor:
        """Sum over ranks of ``tensor`` (dim 0 divisible by the world size); this rank's chunk of it."""
        if tensor.shape[0] % self.world:
            raise ValueError(f"reduce_scatter: dim 0 ({tensor.shape[0]}) is not a multiple of {self.world}")
        self.check(tensor, category)
        if self.world == 1:
            return tensor
        out = tensors.empty(tensor.shape[0] // self.world, *tensor.shape[1:], dtype=tensor.dtype)
        moved = (self.world - 1) / self.world * payload_bytes(tensor)
        with self._timed(category, moved, moved):
            _REDUCE_SCATTER(out, tensor.contiguous(), group=self.group)
        return out

    @_whole_call(1)
    def all_to_all(self, chunks: list[torch.Tensor], category: str | None,
                   receive_counts: list[int] | None = None) -> list[torch.Tensor]:
        """Send ``chunks[r]`` to rank r (any lengths along dim 0, same trailing shape); returns what each
        rank sent here, in rank order. ``receive_counts``: how many rows each rank sends here, when this rank
        knows; else they are exchanged first, as metadata. ``category`` None marks metadata, not counted."""
        if len(chunks) != self.world:
            raise ValueError(f"all_to_all: {len(chunks)} chunks for {self.world} ranks")
        self.check(chunks, category)
        if self.world == 1:
            return chunks
        send_counts = [c.shape[0] for c in chunks]
        if receive_counts is None:
            received_counts = tensors.empty(self.world, dtype=torch.int64)
            dist.all_to_all_single(received_counts, tensors.tensor(send_counts, torch.int64), group=self.group)
            receive_counts = received_counts.tolist()
        trailing = chunks[0].shape[1:]
        out = tensors.empty(sum(receive_counts), *trailing, dtype=chunks[0].dtype)
        row_bytes = chunks[0].element_size() * math.prod(trailing)
        others = [r for r in range(self.world) if r != self.rank]
        sent = sum(send_counts[r] for r in others) * row_bytes
        received = sum(receive_counts[r] for r in others) * row_bytes
        with self._timed(category or "metadata", sent if category else 0, received if category else 0):
            dist.all_to_all_single(out, torch.cat(chunks).contiguous(), receive_counts, send_counts,
                                   group=self.group)
        return list(out.split(receive_counts))

    @_whole_call(2)
    def exchange(self, sends: Mapping[int, Tensors], receives: Mapping[int, Tensors], category: str) -> None:
        """Point-to-point: send ``sends[peer]`` and receive into ``receives[peer]`` (preallocated; a tensor or a
        list of them, in the same order on both sides), all posted at once: one round."""
        outgoing = [(peer, t) for peer, ts in sends.items() for t in _listed(ts)]
        incoming = [(peer, t) for peer, ts in receives.items() for t in _listed(ts)]
        self.check([t for _, t in outgoing + incoming], category)
        ops = [dist.P2POp(dist.isend, t.contiguous(), peer, group=self.group) for peer, t in outgoing]
        ops += [dist.P2POp(dist.irecv, t, peer, group=self.group) for peer, t in incoming]
        sent = sum(payload_bytes(t) for _, t in outgoing)
        received = sum(payload_bytes(t) for _, t in incoming)
        with self._timed(category, sent, received):
            if ops:
                for request in dist.batch_isend_irecv(ops):
                    request.wait()

    @_whole_call(2)
    def exchange_variable(self, sends: dict[int, torch.Tensor], sources: list[int], category: str,
                          dtype: torch.dtype = torch.int64) -> dict[int, torch.Tensor]:
        """Point-to-point with sizes unknown to the receivers: send ``sends[peer]`` (1-D) and return what each
        of ``sources`` sent here (as ``dtype``). The lengths go first, as metadata (not counted)."""
        lengths = {peer: tensors.tensor([len(t)], torch.int64) for peer, t in sends.items()}
        incoming = {peer: tensors.empty(1, dtype=torch.int64) for peer in sources}
        ops = [dist.P2POp(dist.isend, t, peer, group=self.group) for peer, t in lengths.items()]
        ops += [dist.P2POp(dist.irecv, t, peer, group=self.group) for peer, t in incoming.items()]
        if ops:
            for request in dist.batch_isend_irecv(ops):
                request.wait()
        receives = {peer: tensors.empty(int(n[0]), dtype=dtype) for peer, n in incoming.items()}
        self.exchange(sends, receives, category)
        return receives
