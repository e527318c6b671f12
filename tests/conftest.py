"""Shared test helpers: every flow layer is checked by the same two functions."""

from __future__ import annotations

import contextlib
import copy
import os

import pytest
import torch

from nf.flows import native
from nf.flows.checks import autograd_log_abs_det

# how a fused chain runs its loop: compiled on one or two threads (split rows), or the Python reference
LOOP_KINDS = [("compiled", 1), ("compiled", 2), ("python", 1)]


@contextlib.contextmanager
def running_loops(kind: str, threads: int = 1):
    """Fused chains run their compiled loops (skipped where they cannot be built) or their Python ones, on
    ``threads`` threads."""
    if kind == "compiled" and native.loops() is None:
        pytest.skip("the compiled loops are not built here (no C++ compiler or ninja, or NF_NATIVE=0)")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with native.python_loops() if kind == "python" else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(before)


def compiled_and_python_loops_agree(
    chain, z: torch.Tensor, params: torch.Tensor | None, threads: int, tolerance: float = 1e-12
) -> None:
    """A fused chain's compiled loops give the values, log-determinants and gradients of its Python loops, to
    rounding (``tolerance``: relative and absolute), with and without gradients."""
    results = []
    for kind in ("compiled", "python"):
        with running_loops(kind, threads):
            y, log_det = chain(z, params)
            inputs = [z, *([] if params is None else [params]), *chain.parameters()]
            grads = torch.autograd.grad((y.sin().sum() + log_det.sum()), inputs)
            with torch.no_grad():
                results.append((y, log_det, *grads, *chain(z, params)))
    for got, expected in zip(*results, strict=True):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=tolerance, rtol=tolerance)


@pytest.fixture(autouse=True)
def float64_default():
    """Layers are built and checked in float64, so 1e-6 tolerances are meaningful."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def check_layer(layer, z: torch.Tensor, params: torch.Tensor | None = None, inverse_tol: float = 1e-8) -> None:
    """The two properties every layer must have: exact inverse and exact log-determinant."""
    y, log_det = layer(z, params)
    assert y.shape == z.shape and y.dtype == torch.float64
    assert log_det.shape == z.shape[:-1]
    assert torch.isfinite(y).all() and torch.isfinite(log_det).all()
    expected = autograd_log_abs_det(layer, z, params)
    torch.testing.assert_close(log_det, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(layer.inverse(y, params), z, atol=inverse_tol, rtol=0)


def check_same_as_reference(reference, fused, amortized: bool) -> None:
    """A fused flow gives the reference flow's values, log-determinants and gradients (to z, every parameter and the
    per-sample params) to 1e-10, on importance samples x batch inputs; without gradients too.

    The fused flow is ``type(fused)(reference)``, which stacks the reference's weights; the reference's weight
    gradients are stacked the same way, by building that type from a copy of the reference holding them as values.
    """
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 4, reference.dim, generator=g, requires_grad=True)
    params = torch.randn(4, reference.n_params, generator=g, requires_grad=True) if amortized else None
    grad_z, grad_ld = torch.randn(3, 4, reference.dim, generator=g), torch.randn(3, 4, generator=g)
    extra = [params] if amortized else []
    results = []
    for flow in (reference, fused):
        y, log_det = flow(z, params)
        inputs = [z, *extra, *flow.parameters()]
        results.append((y, log_det, torch.autograd.grad((y * grad_z).sum() + (log_det * grad_ld).sum(), inputs)))
    (y0, l0, g0), (y1, l1, g1) = results
    torch.testing.assert_close(y1, y0, atol=1e-10, rtol=0)
    torch.testing.assert_close(l1, l0, atol=1e-10, rtol=0)
    gradients = copy.deepcopy(reference)
    with torch.no_grad():
        for p, grad in zip(gradients.parameters(), g0[1 + len(extra) :]):
            p.copy_(grad)
    expected = [*g0[: 1 + len(extra)], *type(fused)(gradients).parameters()]
    for a, b in zip(g1, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)
    with torch.no_grad():
        y2, l2 = fused(z, params)
    torch.testing.assert_close(y2, y0, atol=1e-10, rtol=0)
    torch.testing.assert_close(l2, l0, atol=1e-10, rtol=0)


@pytest.fixture(scope="module")
def mnist_available():
    """Skip outside CI when the MNIST files cannot be found or downloaded; in CI their absence is a failure."""
    from nf.experiments.data import DataError, load_mnist_pixels

    try:
        load_mnist_pixels("test")
    except DataError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"MNIST not available here: {error}")


@pytest.fixture(scope="session")
def ci_results(tmp_path_factory):
    """One temporary run cache for the slow tests that run chapters and commands under the ``ci`` budgets: a run
    that one of them trains is loaded, not trained again, by the next."""
    return tmp_path_factory.mktemp("ci-results")


@pytest.fixture(scope="session")
def slurm():
    """A single-node SLURM cluster on this machine (``tests/slurm_cluster.py``) for the session, with
    ``SLURM_CONF`` set for this process and the jobs; skipped where it cannot run (not root, SLURM not installed),
    except in CI, where that is a failure."""
    import shutil
    import tempfile
    from pathlib import Path

    from slurm_cluster import start_cluster, unavailable

    reason = unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"no SLURM cluster: {reason}")
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="nf-slurm-"))
    cluster = start_cluster(folder)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
