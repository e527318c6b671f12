"""What an update costs: the profiler's counts against the arithmetic of the model, and the GPU estimate's rule."""

from __future__ import annotations

import pytest
import torch

from nf.experiments.cost import GpuAssumptions, UpdateWork, gpu_seconds_estimate, update_work


@pytest.fixture(autouse=True)
def float32_default():
    """Work is counted as training runs: in float32."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


def test_the_flops_of_the_diagonal_update_are_those_of_its_matrix_products():
    """Forward: 2 B n_in n_out per linear map (encoder 784 -> 400x4 maxout -> 80, decoder 40 -> 400x4 -> 784);
    backward: the weights' gradients of every map and the inputs' gradients of all but the first."""
    batch = 100
    maps = [(784, 1600), (400, 80), (40, 1600), (400, 784)]
    forward = [2 * batch * n_in * n_out for n_in, n_out in maps]
    expected = 2 * sum(forward) + sum(forward[1:])
    work = update_work({"flow": "none", "length": 0, "batch_size": batch})
    assert work.flops == pytest.approx(expected, rel=0.002)  # the rest: a few pointwise operators


def test_a_longer_flow_launches_more_kernels_and_the_count_is_stable():
    short, long = update_work({"flow": "planar", "length": 2}), update_work({"flow": "planar", "length": 8})
    assert long.kernels > short.kernels > update_work({"flow": "none", "length": 0}).kernels
    assert update_work({"flow": "planar", "length": 8}) == long  # a count, not a timing: the same every time


def test_the_gpu_estimate_takes_the_longer_of_launches_and_arithmetic():
    assumptions = GpuAssumptions(launch_seconds=1e-5, flops_per_second=1e12)
    assert gpu_seconds_estimate(UpdateWork(kernels=100, flops=1e6), assumptions) == (pytest.approx(1e-3), "launches")
    assert gpu_seconds_estimate(UpdateWork(kernels=1, flops=1e10), assumptions) == (pytest.approx(1e-2), "arithmetic")


def test_a_bad_batch_size_is_named():
    with pytest.raises(ValueError, match="batch_size"):
        update_work({"flow": "none", "length": 0, "batch_size": 0})
