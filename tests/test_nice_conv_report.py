"""The NICE and convolutional-flow chapters' MNIST tables, figures and readings, on a made-up report ladder (runs
with made-up per-image scores: no training)."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from test_mnist_study import LADDER, STUDY, fake_run

from nf.experiments.mnist import mnist_config
from nf.experiments.mnist_study import report_configs
from nf.report.conv import (
    _bound_split,
    conv_ladder,
    conv_ladder_table,
    conv_mnist_reading,
    plot_learning_curves,
    plot_training_bound,
    plot_training_gap,
)
from nf.report.nice import (
    ladder_subset,
    nice_comparisons,
    nice_ladder,
    nice_mnist_reading,
    nice_pairs_table,
    plot_gain_versus_parameters,
    smoke_note,
)

matplotlib.use("Agg")  # a test, not a notebook: no display

MODELS = [
    ["none", 0],
    *[["planar", k] for k in (10, 20)],
    *[["nice-perm", k] for k in (10, 20)],
    *[[f, 20] for f in ("nice-perm+scale", "nice-orth", "nice-orth+scale")],
    ["radial", 10],
    *[["conv", k] for k in (5, 10)],
]
# -ln p(x) minus the diagonal model's, per image (the diagonal model: 0)
GAIN = {
    ("planar", 10): -0.3,
    ("planar", 20): -0.4,
    ("nice-perm", 10): -0.8,
    ("nice-perm", 20): -1.2,
    ("nice-perm+scale", 20): -1.3,
    ("nice-orth", 20): -1.2,
    ("nice-orth+scale", 20): -1.5,
    ("radial", 10): -0.2,
    ("conv", 5): -0.6,
    ("conv", 10): 0.5,
}
PER_LAYER = {"none": 0, "planar": 100, "nice-perm": 40, "nice-perm+scale": 41, "nice-orth": 40, "nice-orth+scale": 41}
PER_LAYER |= {"radial": 10, "conv": 90}


def ladder(tmp_path, missing=()):
    """A made-up report ladder of ``MODELS`` (the diagonal model and planar K=20 also with seed 1): configs and runs,
    None for the ``missing`` models; each run has a parameter count and a training-bound history."""
    configs = report_configs(STUDY, {**LADDER, "models": MODELS, "seeded": MODELS[:3:2], "seeds": [0, 1]}, "Adam")
    base = 89.5 + torch.randn(1000, generator=torch.Generator().manual_seed(2))
    runs = []
    for i, c in enumerate(configs):
        model = (c["flow"], c["length"]) if c["length"] else ("none", 0)
        if model in missing:
            runs.append(None)
            continue
        noise = 0.05 * torch.randn(1000, generator=torch.Generator().manual_seed(10 + i))
        run = fake_run(c, base + GAIN.get(model, 0.0) + c["seed"] * 0.1 + noise, tmp_path)
        run.metrics["parameters"] = 1000 + PER_LAYER[model[0]] * model[1]
        gap = 10.0 * max(GAIN.get(model, 0.0), 0.0)  # a flow behind the diagonal model starts further behind
        run.metrics["history"] = [[u, min(1.0, u / 10), 95.0 + gap * 50 / u] for u in (10, 20, 30, 40, 50)]
        runs.append(run)
    return configs, runs


def test_the_chapters_keep_the_diagonal_model_and_their_own_families(tmp_path):
    configs, runs = ladder(tmp_path)
    nice_configs, nice_runs = nice_ladder(configs, runs)
    kept = [(c["flow"], c["length"], c["seed"]) for c in nice_configs]
    assert kept[:3] == [("none", 0, 0), ("planar", 10, 0), ("planar", 20, 0)]
    assert not {f for f, _, _ in kept} & {"radial", "conv"} and ("planar", 20, 1) in kept and len(kept) == 10
    assert [r.config for r in nice_runs] == nice_configs
    conv_configs, _ = conv_ladder(configs, runs)
    assert {c["flow"] for c in conv_configs if c["length"]} == {"planar", "nice-perm", "nice-perm+scale", "conv"}
    assert ladder_subset(configs, [None] * len(configs), ("radial",))[1] == [None, None, None]


def test_nice_pairs_are_paired_differences_and_say_what_is_not_trained(tmp_path):
    configs, runs = ladder(tmp_path)
    planned = [(c["flow"], c["length"]) if c["length"] else ("none", 0) for c in configs if c["seed"] == 0]
    assert nice_comparisons(planned) == [
        (("planar", 10), ("nice-perm", 10)),
        (("planar", 20), ("nice-perm", 20)),
        (("nice-perm", 20), ("nice-perm+scale", 20)),
        (("nice-orth", 20), ("nice-orth+scale", 20)),
        (("nice-perm", 20), ("nice-orth", 20)),
    ]
    rows = nice_pairs_table(*nice_ladder(configs, runs))
    assert rows[0]["second minus first"] == "NICE-perm K=10 − planar K=10" and rows[0]["K"] == "10"
    assert rows[0]["−ln p(x)"].startswith("-0.50 ± ") and rows[0]["F(x)"].startswith("-0.50 ± ")  # bound: nll + 3
    assert rows[3]["−ln p(x)"].startswith("-0.30 ± ") and rows[4]["−ln p(x)"].startswith("+0.00 ± ")
    configs, runs = ladder(tmp_path / "missing", missing=[("nice-orth", 20)])
    rows = nice_pairs_table(configs, runs)
    assert [r["−ln p(x)"] for r in rows[3:]] == ["not trained yet"] * 2 and rows[2]["−ln p(x)"] != "not trained yet"


def test_the_nice_reading_is_phrased_from_the_paired_numbers(tmp_path):
    configs, runs = ladder(tmp_path)
    text = nice_mnist_reading(*nice_ladder(configs, runs))
    assert text.startswith(
        "With 50 updates (0% of the paper's; test set, seed 0, paired on the same images) NICE-perm's $-\\ln p(x)$ "
        "is significantly below the diagonal model's at both lengths ($K = 10$: -0.80 ± "
    )
    assert ", falling significantly at every doubling of $K$; ours minus the paper's NICE rows: " in text
    assert (
        "At equal $K$ NICE-perm is significantly ahead of the planar flow at both lengths: at $K = 10$ it is " in text
    )
    assert "0.50 ± 0.00 nats ahead of planar; at $K = 20$ it is 0.80 ± 0.00 nats ahead of planar." in text
    # NICE-perm K=20 adds 800 parameters, planar K=10 1,000
    assert (
        "At fewer parameters: NICE-perm $K = 20$ (800 added parameters) is 0.90 ± 0.00 nats ahead of planar $K = "
        in text
    )
    assert "At $K = 20$ NICE-perm+scale is 0.10 ± 0.00 nats ahead of NICE-perm." in text
    assert "At $K = 20$ NICE-orth+scale is 0.30 ± 0.00 nats ahead of NICE-orth." in text
    assert "At $K = 20$ NICE-orth is level (" in text and "Not trained yet" not in text
    configs, runs = ladder(tmp_path / "missing", missing=[("nice-perm", 20), ("nice-orth+scale", 20)])
    text = nice_mnist_reading(configs, runs)
    assert "at the one length ($K = 10$: -0.80 ± " in text and "NICE-orth+scale" not in text.split("Not trained")[0]
    assert text.endswith("Not trained yet: NICE-perm K=20, NICE-orth+scale K=20.")
    text = nice_mnist_reading(configs, [None] * len(configs))
    assert text.startswith("No NICE-perm model of the MNIST report ladder is trained yet")


def test_conv_ladder_table_shows_the_chapter_families_at_the_conv_lengths(tmp_path):
    configs, runs = ladder(tmp_path)
    rows = {r["flow"]: r for r in conv_ladder_table(*conv_ladder(configs, runs))}
    assert list(rows) == ["convolutional", "planar", "NICE-perm", "NICE-perm+scale"]  # no radial flow
    assert list(rows["planar"]) == ["flow", "K=5", "K=10"] and rows["planar"]["K=5"] == "—"
    assert rows["convolutional"]["K=10"].startswith("+0.50 ± ") and rows["NICE-perm+scale"]["K=10"] == "—"


def test_the_conv_reading_is_phrased_from_the_paired_numbers_and_the_curves(tmp_path):
    configs, runs = ladder(tmp_path)
    text = conv_mnist_reading(*conv_ladder(configs, runs))
    assert text.startswith(
        "With 50 updates (test set, seed 0, paired on the same images), $-\\ln p(x)$ of the convolutional posteriors "
        "minus the diagonal model's: $K = 5$: -0.60 ± 0.00 nats (ahead of it); $K = 10$: +0.50 ± 0.00 nats (behind it)."
    )
    # training bound of conv K=10: 95 + 5 * 50 / u, the diagonal model's 95; annealing ends at update 10
    assert "goes from update 20 to the end: $K = 5$ from +0.00 to +0.00; $K = 10$ from +12.50 to +5.00 nats." in text
    # every fake run's KL is 3 nats: the change is all -ln p(x)
    assert text.endswith(
        "$K = 5$: -0.60 ± 0.00 = -0.60 + 0.00; $K = 10$: +0.50 ± 0.00 = +0.50 + 0.00; the larger part is the "
        "generative model's at every length."
    )
    configs, runs = ladder(tmp_path / "missing", missing=[("conv", 10)])
    assert conv_mnist_reading(configs, runs).endswith("Not trained yet: the convolutional flow at K=10.")
    assert conv_mnist_reading(configs, [None] * len(configs)).startswith("No convolutional flow")


def test_the_figures_draw_one_line_per_trained_family(tmp_path):
    import matplotlib.pyplot as plt

    configs, runs = ladder(tmp_path, missing=[("nice-orth", 20)])
    ax = plot_gain_versus_parameters(*nice_ladder(configs, runs))
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["diagonal", "planar", "NICE-perm", "NICE-perm+scale", "NICE-orth+scale"]
    planar = next(c for c in ax.containers if c.get_label() == "planar")
    assert list(planar.lines[0].get_xdata()) == [1000, 2000]  # parameters added to the diagonal model's 1,000
    assert not plot_gain_versus_parameters(configs, [None] * len(configs)).get_lines()
    ax = plot_training_bound([r for r in runs if r is not None and r.config["flow"] == "conv"])
    assert [line.get_label() for line in ax.get_lines()] == ["DLGM+conv K=5", "DLGM+conv K=10"]
    curves = [r for r in runs if r is not None and r.config["flow"] in ("none", "conv")]
    gap = plot_training_gap(curves)
    conv10 = next(line for line in gap.get_lines() if line.get_label() == "DLGM+conv K=10")
    # training bound of conv K=10: 95 + 5 * 50 / u, the diagonal model's 95, from the end of the annealing (10)
    assert conv10.get_ydata()[-1] == pytest.approx(5.0) and min(conv10.get_xdata()) > 10
    assert plot_training_gap([r for r in curves if r.config["flow"] == "conv"]).texts[0].get_text() == (
        "no diagonal model yet"
    )
    bound, gap = plot_learning_curves(curves)
    assert bound.get_legend() is None and len(bound.figure.legends) == 1  # one legend for both panels
    plt.close("all")


def test_smoke_note_counts_the_finite_runs():
    from types import SimpleNamespace

    runs = [SimpleNamespace(config={"updates": 60}, metrics={"test_nll": v}) for v in (95.0, float("nan"), 94.0)]
    assert (
        smoke_note(runs)
        == "3 smoke runs of 60 updates; 2 of the 3 runs end with a finite $-\\ln p(x)$ on the test images."
    )
    assert smoke_note([]) == "No smoke runs."


@pytest.mark.parametrize("flow", ["nice-perm", "conv"])
def test_a_ladder_without_the_chapter_flows_is_read_as_not_trained(tmp_path, flow):
    configs = report_configs(STUDY, {**LADDER, "models": [["none", 0], ["planar", 2]]}, "Adam")
    runs = [fake_run(c, 90 + torch.zeros(10), tmp_path) for c in configs]
    reading = nice_mnist_reading if flow == "nice-perm" else conv_mnist_reading
    name = "NICE-perm model" if flow == "nice-perm" else "convolutional flow"
    assert reading(configs, runs) == f"The MNIST report ladder of this profile has no {name}."
    assert nice_pairs_table(configs, runs) == [] and conv_ladder_table(configs, runs) == []
    assert not plot_training_bound([]).get_legend()


def test_the_bound_splits_into_the_model_and_the_posterior_fit(tmp_path):
    base = 90 + torch.randn(1000, generator=torch.Generator().manual_seed(0))
    noise = [0.05 * torch.randn(1000, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    config = {"protocol": "test", "updates": 50, "anneal_updates": 10}
    diagonal = fake_run(mnist_config(flow="none", length=0, **config), base, tmp_path, gap=3.0)
    runs = {  # K=5: KL 1 nat smaller, -ln p(x) 0.2 better; K=10: KL 0.3 smaller, -ln p(x) 0.5 worse
        5: fake_run(mnist_config(flow="conv", length=5, **config), base - 0.2 + noise[1], tmp_path, gap=2.0),
        10: fake_run(mnist_config(flow="conv", length=10, **config), base + 0.5 + noise[2], tmp_path, gap=2.7),
    }
    text = _bound_split(diagonal, runs)
    assert "$K = 5$: -1.20 ± 0.00 = -0.20 - 1.00; $K = 10$: +0.20 ± 0.00 = +0.50 - 0.30" in text
    assert "the larger part is the generative model's at $K = 10$ and the posterior's fit at $K = 5$." in text
    assert text.endswith(
        "At $K = 10$ the posterior fits its model better than the diagonal model's does (a smaller "
        "KL, beyond 2 standard errors) while $-\\ln p(x)$ is worse: the loss is in the model it trained."
    )
