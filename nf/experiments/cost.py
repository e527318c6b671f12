"""What one MNIST training update costs in work, and what a GPU would make of it: an estimate, never a measurement.

One update (``nf.experiments.mnist.train_mnist``: a batch of 100 binarised
images, the free energy, its gradient, the gradient clipped, the optimiser's
step) is run once under two of PyTorch's dispatch modes (``update_work``),
which count

* ``kernels``: the operators that reach a device's kernels, each of which
  would launch at least one GPU kernel (below autograd and composite
  operators; those that only create a tensor or a view of one are not
  counted), with the fused chains running their Python loops, as they do on a
  GPU (``nf.flows.native``): a lower bound, since the autograd engine's own
  work (accumulating a gradient used twice) does not pass the dispatch mode;
* ``flops``: the floating-point operations of the matrix products
  (``torch.utils.flop_counter``; the pointwise work is left out).

At batch 100 this model is small: a GPU runs each of those kernels in a few
microseconds, so an update costs about as many launches as it has kernels,
each at PyTorch's eager dispatch and launch overhead, or the arithmetic at
the GPU's throughput if that is longer (``gpu_seconds_estimate``):

    t_GPU ~ max(kernels * t_launch, flops / throughput).

``t_launch`` and the throughput are assumptions (``GPU_ASSUMPTIONS``), not
measured here: no GPU is available to this project.  The estimate says which
of the two bounds a run would hit and how far from the CPU time measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from nf.experiments.mnist import full_config, mnist_config, mnist_optimizer
from nf.flows import native
from nf.models.dlgm import DLGM

VIEW_OPERATORS = frozenset(
    f"aten::{name}"
    for name in (
        "empty",
        "empty_like",
        "empty_strided",
        "view",
        "reshape",
        "_reshape_alias",
        "as_strided",
        "t",
        "transpose",
        "permute",
        "expand",
        "unsqueeze",
        "squeeze",
        "select",
        "slice",
        "narrow",
        "detach",
        "alias",
        "lift_fresh",
        "resize_",
        "unbind",
        "split",
        "chunk",
        "split_with_sizes",
        "_unsafe_view",
        "unflatten",
        "flatten",
        "numpy_T",
        "set_",
    )
)


@dataclass(frozen=True)
class GpuAssumptions:
    """What the GPU estimate assumes: seconds per kernel launch (PyTorch's eager dispatch and launch, one operator
    at a time) and sustained floating-point throughput in operations per second."""

    launch_seconds: float = 10e-6
    flops_per_second: float = 10e12


GPU_ASSUMPTIONS = GpuAssumptions()


@dataclass(frozen=True)
class UpdateWork:
    """The work of one training update: kernels launched (``kernels``) and matrix-product operations (``flops``)."""

    kernels: int
    flops: float


def update_work(config: dict[str, Any]) -> UpdateWork:
    """The work of one training update of the DLGM of the run ``config`` (its flow, length, batch size, optimiser
    and clipping; module docstring), traced after one warm-up update so that the optimiser's state exists."""
    config = full_config(mnist_config(**config))
    flow, length, batch_size = config["flow"], config["length"], config["batch_size"]
    generator = torch.Generator().manual_seed(0)
    model = DLGM(flow, length)
    optimizer = mnist_optimizer(model, config)
    x = torch.bernoulli(torch.full((batch_size, 784), 0.5), generator=generator)

    def update() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model.free_energy(x).mean()
        loss.backward()
        if config["clip_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config["clip_grad_norm"])
        optimizer.step()

    with native.python_loops():
        update()
        with FlopCounterMode(display=False) as flop_counter, _KernelCount() as kernel_count:
            update()
    kernels, flops = kernel_count.kernels, float(flop_counter.get_total_flops())
    return UpdateWork(kernels, flops)


class _KernelCount(TorchDispatchMode):
    """Counts the operators that reach a device's kernels (below autograd and every composite operator), less those
    that only create a tensor or a view of one (``VIEW_OPERATORS``, and every operator PyTorch marks as a view)."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if not func.is_view and f"aten::{func.overloadpacket.__name__}" not in VIEW_OPERATORS:
            self.kernels += 1
        return func(*args, **(kwargs or {}))


def gpu_seconds_estimate(work: UpdateWork, assumptions: GpuAssumptions = GPU_ASSUMPTIONS) -> tuple[float, str]:
    """Estimated seconds per update on a GPU, ``max(kernels * t_launch, flops / throughput)``, and which bound
    decides it (``"launches"`` or ``"arithmetic"``)."""
    launches = work.kernels * assumptions.launch_seconds
    arithmetic = work.flops / assumptions.flops_per_second
    return (launches, "launches") if launches >= arithmetic else (arithmetic, "arithmetic")
