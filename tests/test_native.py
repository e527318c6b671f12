"""The compiled loops are chosen when built and allowed; otherwise the Python loops run, after one warning."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.utils.cpp_extension

from nf.flows import make_flow, native
from nf.flows.conv_chain import ConvChain


@pytest.fixture
def fresh_build(monkeypatch):
    """``native``'s build cache emptied for the test and restored after it."""
    native._build.cache_clear()
    yield monkeypatch
    native._build.cache_clear()


def test_the_switch_chooses_the_python_loops(monkeypatch):
    monkeypatch.setenv(native.SWITCH, "0")
    assert native.loops() is None


def test_not_for_gpus_or_other_dtypes(monkeypatch):
    monkeypatch.setattr(native, "_build", lambda: "built")
    assert native.loops(torch.zeros(1)) == native.loops(torch.zeros(1, dtype=torch.float32)) == "built"
    assert native.loops(torch.zeros(1, dtype=torch.bfloat16)) is None
    assert native.loops(torch.zeros(1, device="meta")) is None


def test_the_build_name_follows_the_sources(tmp_path):
    source = tmp_path / "a.cpp"
    source.write_text("int a;")
    before = native._build_name([source])
    source.write_text("int b;")
    assert native._build_name([source]) != before and before.startswith("nf_loops_")


def test_python_loops_is_scoped():
    with native.python_loops():
        with native.python_loops():
            assert native.loops() is None
        assert native.loops() is None
    assert native._forced_python == 0


def test_a_failed_build_warns_once_and_the_python_loops_give_the_numbers(fresh_build):
    fresh_build.delenv(native.SWITCH, raising=False)

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'nf_loops': c++: command not found")

    fresh_build.setattr(torch.utils.cpp_extension, "load", no_compiler)
    with pytest.warns(UserWarning, match="compiled loops unavailable.*c\\+\\+: command not found.*NF_NATIVE=0"):
        assert native.loops() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cached: no second build, no second warning
        assert native.loops() is None
    flow = make_flow("conv", 6, 2, amortized=True)
    z, params = torch.randn(3, 6), torch.randn(3, flow.n_params)
    for got, expected in zip(ConvChain(flow)(z, params), flow(z, params)):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
