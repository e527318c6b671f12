"""The fused convolutional flow gives the values and gradients of the layer-by-layer flow (float64, 1e-10)."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
from conftest import LOOP_KINDS, check_layer, check_same_as_reference, compiled_and_python_loops_agree, running_loops
from torch.utils.cpp_extension import is_ninja_available

from nf.flows import CircularConvolution, ConvChain, ConvolutionalCoupling, FlowSequence, LogGate, make_flow, native
from nf.flows.circular import SpectrumLayout
from nf.flows.conv_chain import real_dft_matrices
from nf.flows.conv_loops import PYTHON_LOOPS, block_loops
from nf.flows.native import python_loops


def reference(dim, length, amortized, hidden=(64, 64)):
    torch.manual_seed(dim + length)
    flow = make_flow("conv", dim, length, amortized=amortized, coupling_hidden=hidden, context=16)
    with torch.no_grad():  # away from the zero (identity) initialisation, so every weight matters
        for p in flow.parameters():
            p.normal_(std=0.5 / p.shape[-1] ** 0.5)
    return flow


@pytest.mark.parametrize("n", [1, 2, 5, 20, 40])
def test_dense_real_dft_is_the_real_fft(n):
    forward, inverse = real_dft_matrices(SpectrumLayout(n))
    z = torch.randn(3, n)
    spectrum = torch.view_as_real(torch.fft.rfft(z)).flatten(-2)
    torch.testing.assert_close(z @ forward, spectrum, atol=1e-12, rtol=0)
    y = torch.randn(3, n // 2 + 1, dtype=torch.complex128)
    expected = torch.fft.irfft(y, n=n)  # ignores the imaginary parts at frequency 0 and Nyquist, as the matrix does
    torch.testing.assert_close(torch.view_as_real(y).flatten(-2) @ inverse, expected, atol=1e-12, rtol=0)


@pytest.mark.skipif(shutil.which("c++") is None or not is_ninja_available(), reason="no C++ compiler or ninja")
def test_compiled_loops_are_built_where_a_compiler_is(monkeypatch):
    monkeypatch.delenv(native.SWITCH, raising=False)
    assert native.loops() is not None and native.loops().check_blas()
    like = torch.zeros(1)
    assert block_loops(like) is not PYTHON_LOOPS
    with python_loops():
        assert block_loops(like) is PYTHON_LOOPS
    assert block_loops(like.to(torch.bfloat16)) is PYTHON_LOOPS


@pytest.mark.parametrize(
    "dim,length,amortized,hidden",
    [
        (2, 1, False, (8,)),
        (6, 3, True, (16,)),
        (8, 2, False, (16, 16, 16)),
        (40, 10, True, (64, 64)),
        (40, 40, True, (64, 64)),
        (40, 80, True, (64, 64)),
    ],
)
@pytest.mark.parametrize("kind,threads", LOOP_KINDS)
def test_same_values_and_gradients_as_layer_by_layer(dim, length, amortized, hidden, kind, threads):
    plain = reference(dim, length, amortized, hidden)
    with running_loops(kind, threads):
        check_same_as_reference(plain, ConvChain(plain), amortized)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [(0,), (1,), (7,), (5, 3), (1, 3), (2, 1, 3)])
def test_compiled_loops_give_the_python_loops_numbers(batch, threads):
    """Any batch shape (empty, one row, odd rows split between threads, broadcast context): the same values and
    gradients as the Python loops, to rounding (float64)."""
    chain = ConvChain(reference(8, 4, True, (16, 16)))
    z = torch.randn(*batch, 8, requires_grad=True)
    params = torch.randn(*batch[-1:], chain.n_params, requires_grad=True)  # shared by the leading dimensions
    compiled_and_python_loops_agree(chain, z, params, threads)


def blocks(dim, length, circular_amortized, context, hidden=(16,)):
    """A convolutional flow built block by block, for the mixes ``make_flow`` does not build."""
    torch.manual_seed(dim + length)
    layers = []
    for k in range(length):
        layers += [
            CircularConvolution(dim, circular_amortized),
            ConvolutionalCoupling(dim, hidden, swap=k % 2 == 1, context=context),
            LogGate(dim),
        ]
    flow = FlowSequence(layers)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(std=0.5 / p.shape[-1] ** 0.5)
    return flow


@pytest.mark.parametrize("circular_amortized,context", [(True, 0), (False, 3)])
def test_every_mix_of_per_image_and_global_parameters(circular_amortized, context):
    plain = blocks(6, 3, circular_amortized, context)
    check_same_as_reference(plain, ConvChain(plain), plain.amortized)


def test_one_sample_without_a_batch_dimension():
    plain = reference(6, 2, True)
    z, params = torch.randn(6), torch.randn(plain.n_params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no out= tensor is resized
        y, log_det = ConvChain(plain)(z, params)
    expected_y, expected_log_det = plain(z, params)
    assert y.shape == (6,) and log_det.shape == ()
    torch.testing.assert_close(y, expected_y, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det, expected_log_det, atol=1e-10, rtol=0)


def test_float32_as_the_model_trains():
    plain = reference(40, 10, True)
    z, params = torch.randn(3, 5, 40), torch.randn(5, plain.n_params)
    expected = plain(z, params)  # float64
    chain = ConvChain(plain.float())
    y, log_det = chain(z.float(), params.float())
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), expected[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(log_det.double(), expected[1], atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("circular_amortized", [True, False])
def test_reference_is_the_layer_by_layer_flow_with_the_chains_weights(circular_amortized):
    chain = ConvChain(blocks(6, 3, circular_amortized, 2))
    with torch.no_grad():  # the chain's weights move away from those it was built from
        for p in chain.parameters():
            p.add_(0.1 * torch.randn_like(p))
    params, z = torch.randn(2, chain.n_params), torch.randn(2, 6)
    for got, expected in zip(chain.reference()(z, params), chain(z, params)):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
    check_layer(chain, z, params)  # its inverse undoes its fused forward; log-det by autograd


def test_other_flows_are_refused():
    with pytest.raises(ValueError, match="blocks of a circular convolution"):
        ConvChain(make_flow("nice-perm", 4, 2))
    with pytest.raises(ValueError, match="even dimension.*dim=5"):
        ConvChain(make_flow("conv", 5, 2))
    with pytest.raises(ValueError, match="with a hidden layer"):
        ConvChain(make_flow("conv", 4, 2, coupling_hidden=()))
    flow = make_flow("conv", 4, 2)
    with pytest.raises(ValueError, match="blocks of a circular convolution"):
        ConvChain(type(flow)([*flow.layers, LogGate(4)]))
    mixed = blocks(4, 2, True, 0)
    mixed.layers[0] = CircularConvolution(4, amortized=False)
    with pytest.raises(ValueError, match="every block amortised alike"):
        ConvChain(FlowSequence(mixed.layers))
    tanh = blocks(4, 1, False, 0)
    tanh.layers[1].network[1] = torch.nn.Tanh()
    with pytest.raises(ValueError, match="ReLU activations"):
        ConvChain(tanh)


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_loops_in_float32_as_the_model_trains(threads):
    chain = ConvChain(reference(40, 10, True)).float()
    z = torch.randn(3, 5, 40, dtype=torch.float32, requires_grad=True)
    params = torch.randn(5, chain.n_params, dtype=torch.float32, requires_grad=True)
    compiled_and_python_loops_agree(chain, z, params, threads, tolerance=1e-4)
