"""The toy energies and the toy trainer."""

from __future__ import annotations

import math

import pytest
import torch

from nf.experiments.toy import fit_toy, load_toy_model, toy_config
from nf.experiments.training import inverse_temperature
from nf.models.energies import paper_energy


def test_energies_match_table1_at_hand_computed_points():
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # U1 at (2, 0): ring term 0; -ln(exp(0) + exp(-0.5 (4/0.6)^2))
    assert paper_energy("U1")(z[:1]).item() == pytest.approx(-math.log(1 + math.exp(-0.5 * (4 / 0.6) ** 2)))
    # U2 at (0, 1): w1 = 0, 0.5 (1 / 0.4)^2
    assert paper_energy("U2")(z[1:2]).item() == pytest.approx(0.5 * (1 / 0.4) ** 2)
    # U3 at (1, 1): w1 = 1, w2 = 3: -ln(exp(0) + exp(-0.5 (3/0.35)^2))
    assert paper_energy("U3")(z[2:]).item() == pytest.approx(-math.log(1 + math.exp(-0.5 * (3 / 0.35) ** 2)))
    # U4 at (1, 1): w1 = 1, w3 = 1.5: -ln(exp(0) + exp(-0.5 (1.5/0.35)^2))
    assert paper_energy("U4")(z[2:]).item() == pytest.approx(-math.log(1 + math.exp(-0.5 * (1.5 / 0.35) ** 2)))


def test_annealing_reaches_one():
    assert inverse_temperature(0, 10_000) == pytest.approx(0.01)
    assert inverse_temperature(9_900, 10_000) == 1.0
    with pytest.raises(ValueError, match="never reaches beta = 1"):
        toy_config(updates=100, anneal_updates=100)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"energy": "U5"}, "unknown energy 'U5'"),
        ({"family": "spline"}, "unknown flow family 'spline'"),
        ({"length": 0}, "length must be a positive integer, got 0"),
        ({"updates": 0}, "updates must be a positive integer, got 0"),
        ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
        ({"lenght": 2}, "unknown toy config keys"),
    ],
)
def test_bad_toy_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        toy_config(**overrides)


@pytest.mark.slow
def test_a_short_fit_improves_and_reloads(tmp_path):
    torch.set_default_dtype(torch.float32)
    run = fit_toy(
        tmp_path, family="planar", length=2, updates=300, anneal_updates=100, batch_size=64, eval_samples=2000
    )
    metrics = run.load_json("metrics.json")
    history = metrics["history"]
    assert history[-1][1] == 1.0
    assert metrics["free_energy"] < 1.0  # the standard normal start scores about 5 on U1
    model = load_toy_model(run)
    samples, log_q = model.sample(10)
    assert samples.shape == (10, 2) and torch.isfinite(log_q).all()


@pytest.mark.slow
def test_fitted_kl_is_free_energy_plus_log_z_and_positive(tmp_path):
    run = fit_toy(tmp_path, energy="U2", length=2, updates=200, anneal_updates=100, batch_size=64, eval_samples=4000)
    m = run.load_json("metrics.json")
    assert m["kl"] == pytest.approx(m["free_energy"] + m["log_normalizer"])
    assert m["kl"] > -3 * m["free_energy_se"]


@pytest.mark.slow
def test_fit_many_in_parallel_matches_serial(tmp_path):
    from nf.experiments.toy import fit_toys, run_configs

    configs = run_configs(
        ["U1"], ["planar", "radial"], [2], [0], updates=150, anneal_updates=50, batch_size=32, eval_samples=500
    )
    parallel = fit_toys(configs, tmp_path / "parallel", workers=2)
    serial = fit_toys(configs, tmp_path / "serial", workers=1)
    for a, b in zip(parallel, serial):
        assert a.key == b.key
        assert a.load_json("metrics.json")["free_energy"] == pytest.approx(
            b.load_json("metrics.json")["free_energy"], abs=1e-5
        )


@pytest.mark.slow
def test_summary_groups_seeds(tmp_path):
    from nf.experiments.toy import fit_toys, run_configs
    from nf.report.toy import results_table, summarize

    configs = run_configs(
        ["U1"], ["planar"], [2], [0, 1], updates=120, anneal_updates=50, batch_size=32, eval_samples=500
    )
    runs = fit_toys(configs, tmp_path, workers=1)
    rows = summarize(runs)
    assert len(rows) == 1 and rows[0]["seeds"] == 2 and rows[0]["parameters"] == 2 * 5 + 4
    kls = sorted(run.metrics["kl"] for run in runs)
    assert (rows[0]["kl_min"], rows[0]["kl_max"]) == (kls[0], kls[-1])
    assert results_table(rows, "U1")[0]["flow"] == "planar K=2"


@pytest.mark.slow
def test_scaling_comparison_table_pairs_runs(tmp_path):
    from nf.experiments.toy import fit_toys, run_configs
    from nf.report.toy import paired_kl_table, summarize

    configs = run_configs(
        ["U1"],
        ["nice-perm", "nice-perm+scale", "conv"],
        [2],
        [0],
        updates=120,
        anneal_updates=50,
        batch_size=32,
        eval_samples=500,
    )
    rows = summarize(fit_toys(configs, tmp_path, workers=1))
    (row,) = paired_kl_table(rows, "nice-perm", "nice-perm+scale")
    by_family = {r["family"]: r for r in rows}
    assert row["ratio"] == f"{by_family['nice-perm+scale']['kl'] / by_family['nice-perm']['kl']:.2f}"
    assert by_family["nice-perm+scale"]["parameters"] == by_family["nice-perm"]["parameters"] + 2
    assert paired_kl_table(rows, "nice-orth", "nice-orth+scale") == []


def test_committed_toy_runs_keep_their_cache_keys():
    """A toy run in results/ is found again from its config: the key is read from the cache, not recomputed."""
    from nf.runs.cache import REPO_ROOT, config_hash, list_runs

    runs = list_runs("toy", REPO_ROOT / "results")
    assert runs, "the committed toy runs are missing"
    assert all(config_hash("toy", toy_config(**run.config)) == run.key for run in runs[:20])


def test_range_bars_run_from_the_lowest_to_the_highest_seed():
    """The log-scale KL panel's bars: a seed spread larger than the mean must not reach below zero."""
    import matplotlib.pyplot as plt

    from nf.report.figures import plot_versus_length

    rows = [
        {"energy": "U1", "family": "planar", "length": k, "kl": 1.0, "kl_sd": 2.0, "kl_min": 0.1, "kl_max": 2.5}
        for k in (2, 8)
    ]
    fig, axes = plt.subplots(1, 1, squeeze=False)
    plot_versus_length(rows, ["U1"], "kl", "KL", axes[0], bars="range")
    (bars,) = axes[0][0].containers
    lows, highs = zip(*(segment[:, 1] for segment in bars.lines[2][0].get_segments()))
    plt.close(fig)
    assert lows == pytest.approx((0.1, 0.1)) and highs == pytest.approx((2.5, 2.5))
    with pytest.raises(ValueError, match="bars='iqr'"):
        plot_versus_length(rows, ["U1"], "kl", "KL", axes[0], bars="iqr")
