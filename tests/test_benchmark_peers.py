"""The benchmark's peers (``benchmarks/flow_update.py --peers``): each library's planar and radial flows compute our
loss and gradients on the same parameters and base draws, a flow that computes something else is caught, and the
peers block the benchmark prints is the one ``nf.report.tables.peer_rows`` reads.

The peers are the benchmark extra (``pip install -r benchmarks/requirements.txt``), which the tests do not need:
the checks against a library skip where it is not installed (as in CI, which installs ``requirements.txt`` only).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from nf.models.energies import target_energy
from nf.report.tables import peer_rows

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def benchmark():
    """``benchmarks/flow_update.py`` as a module (``benchmarks`` is not a package)."""
    spec = importlib.util.spec_from_file_location("flow_update", ROOT / "benchmarks" / "flow_update.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def needs(distribution: str) -> None:
    module = {"pyro-ppl": "pyro", "normflows": "normflows"}[distribution]
    pytest.importorskip(module, reason=f"{distribution} (the benchmark extra, benchmarks/requirements.txt) is absent")


def agrees(benchmark, found: dict[str, float]) -> bool:
    return all(value <= benchmark.AGREEMENT[key.split()[0]] for key, value in found.items())


@pytest.mark.parametrize("family", ["planar", "radial"])
@pytest.mark.parametrize("distribution", ["pyro-ppl", "normflows"])
def test_a_peers_toy_fit_computes_our_loss_and_gradients(benchmark, distribution, family):
    needs(distribution)
    ours = benchmark.our_toy_fit(family, 3).model
    found = benchmark.toy_agreement(benchmark.TOY_FITS[distribution], ours, family, 3, target_energy("U2"), 64, 0.5)
    assert set(found) == {"float64 loss", "float64 gradients", "float32 loss"}
    assert agrees(benchmark, found), found


@pytest.mark.parametrize("family", ["planar", "radial"])
def test_pyros_amortised_chain_computes_our_dlgm_loss_and_gradients(benchmark, family):
    needs("pyro-ppl")
    x = torch.bernoulli(torch.rand(8, 784, generator=torch.Generator().manual_seed(0)))
    found = benchmark.dlgm_agreement(family, 3, x)
    assert agrees(benchmark, found), found


def test_a_toy_fit_that_computes_something_else_is_caught(benchmark, capsys):
    class Scaled(benchmark.ToyFit):  # our fit with its loss a thousandth too large
        def loss(self, energy, batch, beta):
            return 1.001 * super().loss(energy, batch, beta)

    ours = benchmark.our_toy_fit("planar", 2).model
    same = benchmark.toy_agreement(benchmark.ToyFit, ours, "planar", 2, target_energy("U1"), 32, 0.5)
    assert max(same.values()) == 0.0  # ours against itself
    found = benchmark.toy_agreement(Scaled, ours, "planar", 2, target_energy("U1"), 32, 0.5)
    assert found["float64 loss"] == pytest.approx(1e-3, rel=1e-6)
    assert not benchmark.report_agreement("scaled", "toy", "planar", 2, found)
    assert capsys.readouterr().out.endswith("DIFFERS, not timed\n")


def test_the_printed_peers_block_is_the_one_the_compute_appendix_reads(benchmark, capsys):
    update = {("fast", "planar", 0): 0.010}
    for family in ("planar", "radial"):
        update |= {("fast", family, 10): 0.014, ("plain", family, 10): 0.018, ("pyro", family, 10): 0.028}
    del update[("pyro", "radial", 10)]  # as if Pyro's radial chain had failed its check
    toy = {("ours", "planar", 2): 0.002, ("pyro-ppl", "planar", 2): 0.003, ("ours", "radial", 2): 0.004}
    versions = {"pyro-ppl": "1.9.2", "normflows": None, "zuko": None}
    benchmark.print_peers(update, [0, 10], toy, [2], versions, {("pyro-ppl", "radial", 2)})
    rows = peer_rows(capsys.readouterr().out)
    cells = [(r["update"], r["flow"], r["K"], r["ours / K=0"], r["ours"], r["Pyro"], r["normflows"]) for r in rows]
    assert cells == [
        ("DLGM", "planar", "10", "1.40", "1.00", "2.00", "-"),
        ("DLGM", "radial", "10", "1.40", "1.00", "differs", "-"),
        ("toy", "planar", "2", "-", "1.00", "1.50", "absent"),
        ("toy", "radial", "2", "-", "1.00", "differs", "absent"),
    ]
    assert rows[0]["ours layer by layer"] == "1.29" and rows[2]["ours, updates/s"] == "500"
    assert {r["zuko"] for r in rows} == {"absent"}


def test_the_benchmark_extra_pins_every_peer(benchmark):
    pins = benchmark.pinned_versions()
    assert set(benchmark.PEERS) <= set(pins) and all(v.count(".") >= 1 for v in pins.values())
