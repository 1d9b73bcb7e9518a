"""Every tensor the executor creates, on the rank's one device.

``use(device)`` sets it once per rank (``run.use_device``: this rank's GPU under NCCL, else the CPU); every
factory here puts its tensor there, and ``Communicator`` refuses any other. Not ``torch.set_default_device``:
that is thread-local, and autograd runs backward on a thread of its own, where tensors made there would
land on the CPU (NCCL: "Tensors must be CUDA and dense").

>>> use("cpu"); zeros(2, 3).shape, arange(4).dtype
(torch.Size([2, 3]), torch.int64)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_device = torch.device("cpu")


def use(device: str | torch.device) -> None:
    """Make ``device`` the one every executor tensor of this process is created on."""
    global _device
    _device = torch.device(device)


def device() -> torch.device:
    """The device this rank's executor tensors live on."""
    return _device


def from_numpy(array: np.ndarray) -> torch.Tensor:
    """``array`` as a tensor on the executor's device (copied only when that is not the CPU)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(_device)


def tensor(values: Sequence[float] | Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=_device)


def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype, device=_device)


def empty(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=_device)


def full(shape: tuple[int, ...], value: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.full(shape, value, dtype=dtype, device=_device)


def arange(n: int) -> torch.Tensor:
    return torch.arange(n, device=_device)


def generator(seed: int) -> torch.Generator:
    """A random generator on the executor's device, seeded."""
    return torch.Generator(device=_device).manual_seed(seed)
