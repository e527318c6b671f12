"""The folded NICE chain gives the values and gradients of the layer-by-layer NICE flow (float64, 1e-10)."""

from __future__ import annotations

import pickle

import pytest
import torch
from conftest import LOOP_KINDS, check_layer, check_same_as_reference, compiled_and_python_loops_agree, running_loops

from nf.flows import CouplingChain, Permutation, make_flow


def reference(family, dim, length, amortized, hidden=(64, 64)):
    torch.manual_seed(dim + length)
    flow = make_flow(family, dim, length, amortized=amortized, coupling_hidden=hidden, context=16)
    with torch.no_grad():  # away from the zero (identity) initialisation, so every weight matters
        for p in flow.parameters():
            p.normal_(std=0.5 / p.shape[-1] ** 0.5)
    return flow


@pytest.mark.parametrize("family", ["nice-perm", "nice-orth", "nice-perm+scale", "nice-orth+scale"])
@pytest.mark.parametrize(
    "dim,length,amortized", [(2, 1, False), (6, 4, True), (8, 3, False), (40, 10, True), (40, 40, True), (40, 80, True)]
)
@pytest.mark.parametrize("kind,threads", LOOP_KINDS)
def test_same_values_and_gradients_as_layer_by_layer(family, dim, length, amortized, kind, threads):
    plain = reference(family, dim, length, amortized)
    with running_loops(kind, threads):
        check_same_as_reference(plain, CouplingChain(plain), amortized)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [(0,), (1,), (7,), (5, 3), (1, 3), (2, 1, 3)])
@pytest.mark.parametrize("amortized", [True, False])
def test_compiled_loops_give_the_python_loops_numbers(batch, threads, amortized):
    """Any batch shape (empty, one row, odd rows split between threads, context shared by leading dimensions): the
    same values and gradients as the Python loops, to rounding (float64)."""
    chain = CouplingChain(reference("nice-perm+scale", 8, 4, amortized, hidden=(16, 16)))
    z = torch.randn(*batch, 8, requires_grad=True)
    params = torch.randn(*batch[-1:], chain.n_params, requires_grad=True) if amortized else None
    compiled_and_python_loops_agree(chain, z, params, threads)


@pytest.mark.parametrize("family,amortized", [("nice-orth+scale", True), ("nice-perm+scale", False)])
def test_reference_is_the_layer_by_layer_flow_with_the_chains_weights(family, amortized):
    plain = reference(family, 6, 3, amortized)
    chain = CouplingChain(plain)
    with torch.no_grad():  # the chain's weights move away from those it was built from
        for p in chain.parameters():
            p.add_(0.1 * torch.randn_like(p))
    params = torch.randn(2, chain.n_params) if amortized else None
    z = torch.randn(2, 6)
    for got, expected in zip(chain.reference()(z, params), chain(z, params)):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
    assert chain.n_params == chain.reference().n_params and chain.amortized == amortized
    check_layer(chain, z, params)  # its inverse undoes its (folded) forward; log-det by autograd
    for p, q in zip(
        plain.parameters(), reference(family, 6, 3, amortized).parameters()
    ):  # the caller's flow: untouched
        torch.testing.assert_close(p, q, atol=0, rtol=0)


def test_loaded_mixings_are_folded_again():
    chain = CouplingChain(reference("nice-perm", 6, 3, False))
    other = reference("nice-perm", 6, 3, False)
    with torch.no_grad():
        other.layers[1].perm.copy_(other.layers[1].perm.flip(0))
        other.layers[1].inverse_perm.copy_(torch.argsort(other.layers[1].perm))
    chain.load_state_dict(CouplingChain(other).state_dict())
    z = torch.randn(4, 6)
    torch.testing.assert_close(chain(z)[0], other(z)[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(chain.reference()(z)[0], other(z)[0], atol=1e-10, rtol=0)
    copied = pickle.loads(pickle.dumps(chain))  # torch.save of a whole model pickles its chain
    torch.testing.assert_close(copied(z)[0], other(z)[0], atol=1e-10, rtol=0)


def test_other_flows_are_refused():
    with pytest.raises(ValueError, match="alternating with permutations or orthogonal mixings"):
        CouplingChain(make_flow("planar", 4, 2))
    with pytest.raises(ValueError, match="with a hidden layer"):
        CouplingChain(make_flow("nice-perm", 4, 2, coupling_hidden=()))
    flow = make_flow("nice-perm", 4, 2)
    with pytest.raises(ValueError, match="a coupling last"):
        CouplingChain(type(flow)([*flow.layers, Permutation(4)]))
    with pytest.raises(ValueError, match="an even dimension"):
        CouplingChain(make_flow("nice-perm", 5, 2))


@pytest.mark.parametrize("hidden", [(8,), (8, 8, 8)])
@pytest.mark.parametrize("length,amortized", [(1, True), (1, False), (3, True)])
def test_other_network_depths_and_a_single_coupling(hidden, length, amortized):
    plain = reference("nice-perm+scale", 6, length, amortized, hidden)
    check_same_as_reference(plain, CouplingChain(plain), amortized)


@pytest.mark.parametrize("amortized", [True, False])
@pytest.mark.parametrize("batch", [(), (0,), (0, 3)])
def test_one_sample_and_empty_batches_keep_the_reference_shapes(batch, amortized):
    plain = reference("nice-perm", 6, 3, amortized)
    z = torch.randn(*batch, 6, requires_grad=True)
    params = torch.randn(*batch, plain.n_params) if amortized else None
    y, log_det = CouplingChain(plain)(z, params)
    for got, expected in zip((y, log_det), plain(z, params)):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
    assert torch.autograd.grad(y.sum(), z)[0].shape == z.shape


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_loops_in_float32_as_the_model_trains(threads):
    chain = CouplingChain(reference("nice-perm+scale", 40, 10, True)).float()
    z = torch.randn(3, 5, 40, dtype=torch.float32, requires_grad=True)
    params = torch.randn(5, chain.n_params, dtype=torch.float32, requires_grad=True)
    compiled_and_python_loops_agree(chain, z, params, threads, tolerance=1e-4)
