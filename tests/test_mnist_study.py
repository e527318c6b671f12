"""The recipe choice and the MNIST verdicts, on runs with made-up per-image scores (no training)."""

from __future__ import annotations

import json

import pytest
import torch

from nf.experiments.comparisons import paired_difference
from nf.experiments.mnist_study import choose_recipe, report_configs, study_configs
from nf.report.conv import conv_ladder_reading, conv_ladder_table
from nf.report.mnist import ladder_table, seed_table
from nf.report.mnist_verdicts import mnist_verdicts, seed_noise, seed_noise_note, table2_as_bounds, verdict_sentence
from nf.runs.cache import cached_run

STUDY = {
    "models": [["none", 0], ["planar", 20]],
    "common": {"protocol": "validation", "updates": 50, "anneal_updates": 10},
    "recipes": {
        "paper's RMSprop": {"optimizer": "rmsprop", "learning_rate": 1e-5},
        "Adam": {"learning_rate": 1e-3, "final_learning_rate": 1e-4},
        "Adam, flow step x0.1": {"learning_rate": 1e-3, "final_learning_rate": 1e-4, "flow_lr_scale": 0.1},
    },
    "budgets": {"recipe": "Adam", "updates": []},
    "candidates": ["Adam", "Adam, flow step x0.1"],
}
LADDER = {
    "models": [["none", 0], *[["planar", k] for k in (10, 20, 40, 80)]],
    "seeded": [],
    "seeds": [0],
    "common": {"protocol": "test", "updates": 50, "anneal_updates": 10},
}


def fake_run(config, nll, tmp_path, gap=3.0):
    """A cached run whose per-image -ln p(x) is ``nll`` (a tensor) and whose bound is ``nll + gap``."""

    def write(config, folder, checkpoint=None):
        torch.save({"nll": nll.float(), "bound": (nll + gap).float()}, folder / "scores.pt")
        prefix = "validation" if config["protocol"] == "validation" else "test"
        metrics = {
            f"{prefix}_{name}": value.mean().item()
            for name, value in (("nll", nll), ("bound", nll + gap), ("kl", torch.full_like(nll, gap)))
        }
        metrics.update({f"{k}_se": 0.1 for k in list(metrics)})
        (folder / "metrics.json").write_text(json.dumps(metrics))

    return cached_run("mnist", config, write, tmp_path)


def study_runs(tmp_path, gains):
    """Study runs where planar K=20 under each recipe is ``gains[recipe]`` nats from the diagonal model, per image."""
    base = 90 + torch.randn(1000, generator=torch.Generator().manual_seed(0))
    runs = {}
    for seed, (name, configs) in enumerate(study_configs(STUDY).items()):
        noise = torch.randn(1000, generator=torch.Generator().manual_seed(seed + 1))  # each run its own
        noise -= noise.mean()
        runs[name] = [fake_run(configs[0], base, tmp_path), fake_run(configs[1], base + gains[name] + noise, tmp_path)]
    return runs


def test_the_slower_flow_is_chosen_only_when_significantly_better(tmp_path):
    runs = study_runs(tmp_path / "a", {"paper's RMSprop": -3.0, "Adam": -0.3, "Adam, flow step x0.1": -0.35})
    assert choose_recipe(STUDY, runs)[0] == "Adam"  # 0.05 nats better: within two paired standard errors (0.09)
    runs = study_runs(tmp_path / "b", {"paper's RMSprop": -3.0, "Adam": -0.3, "Adam, flow step x0.1": -0.8})
    recipe, evidence = choose_recipe(STUDY, runs)
    assert recipe == "Adam, flow step x0.1" and "-0.50 ± 0.04" in evidence


def test_an_undecided_study_says_so(tmp_path):
    runs = study_runs(tmp_path, {"paper's RMSprop": -3.0, "Adam": -0.3, "Adam, flow step x0.1": -0.3})
    runs["Adam, flow step x0.1"][1] = None
    recipe, evidence = choose_recipe(STUDY, runs)
    assert recipe == "Adam" and evidence.startswith("not decided")


def test_verdicts_from_a_full_ladder(tmp_path):
    runs = study_runs(tmp_path, {"paper's RMSprop": -3.0, "Adam": -0.3, "Adam, flow step x0.1": -0.3})
    configs = report_configs(STUDY, LADDER, "Adam")
    base = 89.5 + torch.randn(1000, generator=torch.Generator().manual_seed(2))
    ladder = [fake_run(c, base - 0.1 * (i > 0) * i, tmp_path) for i, c in enumerate(configs)]  # 0, -0.1, ..., -0.4
    rows = {r["claim"]: r for r in mnist_verdicts(STUDY, runs, configs, ladder)}
    assert rows["Table 2: diagonal, −ln p(x)"]["verdict"] == "reproduced"  # 89.5 against 89.9
    assert rows["Table 2: planar K=80, −ln p(x)"]["verdict"] == "not reproduced"  # 89.1 against 85.1
    longer = rows["longer planar flows give a lower −ln p(x) (Table 2)"]  # the paper-optimiser runs have no ladder
    assert longer["verdict"] == "partly" and longer["evidence"].startswith("K=0 to 80: -0.40 ± ")
    k20 = rows["planar K=20 gives a lower −ln p(x) than the diagonal model (Table 2)"]
    assert k20["verdict"] == "partly" and k20["evidence"].startswith("only under the paper's optimiser")
    assert "our recipe: test set: K=0 to 20: -0.20 ± " in k20["evidence"]
    assert "other study recipes, validation set: Adam -0.30 ± " in k20["evidence"]
    assert rows["Table 2: NICE-perm K=10, −ln p(x)"]["verdict"] == "not tested"
    kl = rows["the KL to the true posterior falls with K (Fig. 4b)"]  # KL constant: no fall, and no rise either
    assert kl["verdict"] == "not established" and kl["margin"] == "0.0"
    assert rows["planar flows beat NICE at equal K (Table 2)"]["verdict"] == "not tested"
    d, se = paired_difference(ladder[0], ladder[-1])
    assert d == pytest.approx(-0.4, abs=1e-4) and se < 1e-4
    # bounds 3 nats above: diagonal 92.5 against 89.9, planar 92.4 to 92.1 against 87.5 to 85.1
    assert table2_as_bounds(configs, ladder).endswith("our 5 trained Table 2 models would then give: 5 not reproduced.")


def test_the_reading_of_the_study_is_phrased_from_its_numbers(tmp_path):
    from nf.report.mnist import study_reading

    runs = study_runs(tmp_path, {"paper's RMSprop": -3.0, "Adam": -0.3, "Adam, flow step x0.1": -0.31})
    text = study_reading(STUDY, runs)
    assert text.startswith(
        "Under the paper's optimiser (50 updates) planar K=20 is better by 3.00 ± 0.03 nats than the diagonal "
        "model; under Adam (50 updates) it is better by 0.30 ± 0.03 nats. At the same 50 updates (Adam), the paper's "
        "optimiser's diagonal model is level (+0.00 ± 0.00 nats) with Adam's, and its planar K=20 2.70 ± 0.05 nats "
        "ahead of Adam's."
    )
    assert "no significant change from plain Adam (the difference, -0.01 ± 0.04 nats, is within 2 standard" in text
    runs["Adam"][1] = None
    assert "waits for all of its runs" in study_reading(STUDY, runs)


def test_the_reading_covers_the_trained_budgets_and_names_the_waiting_ones(tmp_path, monkeypatch):
    from nf.report.mnist import study_reading

    monkeypatch.setitem(STUDY, "budgets", {"recipe": "Adam", "updates": [20, 80]})
    gains = {"paper's RMSprop": -3.0, "Adam": -0.3, "Adam, flow step x0.1": -0.3, "Adam @20": -0.1, "Adam @80": -0.5}
    runs = study_runs(tmp_path, gains)
    runs["Adam @80"][1] = None
    text = study_reading(STUDY, runs)
    assert (
        "With Adam for 20 updates instead of 50 planar K=20 is better by 0.10 ± 0.03 nats than the diagonal model: "
        "a smaller gain than after 50 (by " in text
    )
    assert text.endswith("The budget *Adam @80* waits for its runs.")


def test_the_conclusion_decides_each_reading_from_the_numbers(tmp_path, monkeypatch):
    from nf.report.mnist import study_conclusion

    monkeypatch.setitem(STUDY, "budgets", {"recipe": "Adam", "updates": [20, 80]})
    gains = {"paper's RMSprop": -3.0, "Adam": -0.3, "Adam, flow step x0.1": -0.8, "Adam @20": -0.1, "Adam @80": -0.5}
    runs = study_runs(tmp_path / "a", gains)
    text = study_conclusion(STUDY, runs)
    assert "so it does not support readings (a) and (d)" in text  # every diagonal model is at the same level
    assert (
        "Reading (b) holds under Adam: the gain grows with the budget (planar K=20 minus the diagonal model in " in text
    )
    assert "where the flow is ahead: -0.10 at 20, -0.30 at 50, -0.50 at 80 updates)" in text
    assert "Reading (c) holds in part: a ten times smaller flow step (Adam, flow step x0.1) gains 0.50 ± " in text
    assert "its gain stays 2.20 ± " in text  # the paper optimiser's -3.0 against -0.8
    shrinking = study_runs(tmp_path / "c", {**gains, "Adam @20": -0.9, "Adam @80": -0.1})
    assert "Reading (b) does not hold under Adam: the flow's gain is smaller at 80 updates than at 20 (planar" in (
        study_conclusion(STUDY, shrinking)
    )
    monkeypatch.setitem(STUDY, "budgets", {"recipe": "paper's RMSprop", "updates": []})  # no run to compare with
    assert study_conclusion(STUDY, shrinking) == "*The conclusion of the study waits for its runs.*"
    monkeypatch.setitem(STUDY, "budgets", {"recipe": "Adam", "updates": [20, 80]})
    slow = study_configs(STUDY)["paper's RMSprop"]  # the paper's optimiser leaves its diagonal model 2 nats behind
    base = 92 + torch.randn(1000, generator=torch.Generator().manual_seed(0))
    runs["paper's RMSprop"] = [fake_run(slow[0], base, tmp_path / "b"), fake_run(slow[1], base - 3.0, tmp_path / "b")]
    text = study_conclusion(STUDY, runs)
    assert text.startswith(
        "**What the study says.** Readings (a) and (d) hold together: at 50 updates the paper's optimiser leaves "
        "the diagonal model 2.00 ± 0.00 nats behind Adam's, and its flow gains 2.70 ± 0.03 nats more"
    )
    assert "better planar K=20 model (0.70 ± 0.03 nats ahead of Adam's at 50 updates)" in text
    runs["Adam @20"][1] = None
    assert study_conclusion(STUDY, runs).startswith("**What the study says.**")  # two budgets remain
    runs["Adam @80"][1] = None
    assert study_conclusion(STUDY, runs) == "*The conclusion of the study waits for its runs.*"


def test_nice_verdicts_from_the_nice_rungs(tmp_path):
    runs = study_runs(tmp_path, {"paper's RMSprop": -3.0, "Adam": -0.3, "Adam, flow step x0.1": -0.3})
    nice = [["nice-perm", k] for k in (10, 20, 40, 80)] + [
        [f, 20] for f in ("nice-perm+scale", "nice-orth", "nice-orth+scale")
    ]
    ladder = {**LADDER, "models": [*LADDER["models"], *nice]}
    configs = report_configs(STUDY, ladder, "Adam")
    base = 89.5 + torch.randn(1000, generator=torch.Generator().manual_seed(2))
    shift = {
        "none": 0.0,
        "planar": -1.0,
        "nice-perm": -0.5,
        "nice-perm+scale": -0.8,
        "nice-orth": -0.5,
        "nice-orth+scale": -0.5,
    }  # planar ahead of NICE; scaling helps NICE-perm only
    made = [fake_run(c, base + shift[c["flow"] if c["length"] else "none"], tmp_path) for c in configs]
    rows = {r["claim"]: r for r in mnist_verdicts(STUDY, runs, configs, made)}
    assert rows["planar flows beat NICE at equal K (Table 2)"]["verdict"] == "reproduced"
    assert rows["Table 2: NICE-perm K=40, −ln p(x)"]["verdict"] == "partly"  # about 89.0 against 87.3
    scaling = rows["NICE's diagonal scaling layer helps (an open question of earlier reproductions)"]
    assert scaling["verdict"] == "partly" and "NICE-perm K=20: +0.30" in scaling["evidence"]
    sentence = verdict_sentence({**scaling, "updates": "50"})
    assert sentence.startswith("At 50 updates (MNIST chapter, test set) the verdict on \"NICE's diagonal scaling")
    assert sentence.endswith(f"is *partly*; {scaling['evidence']}.")
    made[configs.index(next(c for c in configs if c["flow"] == "nice-orth"))] = None
    rows = {r["claim"]: r for r in mnist_verdicts(STUDY, runs, configs, made)}
    scaling = rows["NICE's diagonal scaling layer helps (an open question of earlier reproductions)"]
    assert scaling["verdict"] == "not tested"
    assert scaling["evidence"].startswith("so far −ln p(x), without minus with the scaling: NICE-perm K=20: +0.30 ± ")
    assert scaling["evidence"].endswith("; not trained yet: nice-orth K=20")
    for c in configs:  # NICE-perm at K=10 and 20 only
        if c["flow"] == "nice-perm" and c["length"] > 20:
            made[configs.index(c)] = None
    rows = {r["claim"]: r for r in mnist_verdicts(STUDY, runs, configs, made)}
    beaten = rows["planar flows beat NICE at equal K (Table 2)"]
    assert beaten["verdict"] == "not tested"
    assert beaten["evidence"].startswith("so far −ln p(x), NICE-perm minus planar: K=10: +0.50 ± ")
    assert beaten["evidence"].endswith("not trained yet: nice-perm K=40, nice-perm K=80")


def test_verdicts_carry_the_spread_over_training_seeds(tmp_path):
    nice = [["nice-perm", 20], ["nice-perm+scale", 20]]
    ladder = {
        **LADDER,
        "models": [*LADDER["models"], *nice],
        "seeded": [["none", 0], ["planar", 20]],
        "seeds": [0, 1, 2],
    }
    configs = report_configs(STUDY, ladder, "Adam")
    base = 89.5 + torch.randn(1000, generator=torch.Generator().manual_seed(2))
    shift = {"none": 0.0, "planar": -1.0, "nice-perm": -0.5, "nice-perm+scale": -0.8}
    made = []
    for c in configs:
        planar_seed = 0.1 * c["seed"] if c["flow"] == "planar" and c["length"] == 20 else 0.0  # gains: -1.0, -0.9, -0.8
        made.append(fake_run(c, base + shift[c["flow"] if c["length"] else "none"] + planar_seed, tmp_path))
    noise = seed_noise(configs, made)
    assert noise.level["nll"] == pytest.approx(0.1)  # planar K=20's -ln p(x) over its seeds
    assert noise.gain["nll"] == pytest.approx(0.1 * 2**0.5)  # not the paired 0.1: two independent retrainings
    assert noise.gain["kl"] == pytest.approx(0.0, abs=1e-6)  # the made-up bound is -ln p(x) + 3 for every run
    assert noise.measured_on == "DLGM diagonal (3 seeds), DLGM+planar K=20 (3 seeds)"
    assert "0.14 nats for a difference of" in seed_noise_note(noise)
    assert "No model is trained with several seeds" in seed_noise_note(seed_noise(configs, [None] * len(configs)))
    rows = {r["claim"]: r for r in mnist_verdicts(STUDY, {}, configs, made)}
    k20 = rows["planar K=20 gives a lower −ln p(x) than the diagonal model (Table 2)"]
    u = 0.1 * 2**0.5 / 3**0.5  # the mean of three seeds; the per-image differences are exact here
    assert k20["evidence"].startswith(f"test set (mean of 3 seeds): K=0 to 20: -0.90 ± {u:.2f}")
    assert rows["Table 2: diagonal, −ln p(x)"]["ours"].endswith(" (mean of 3 seeds)")
    scaling = rows["NICE's diagonal scaling layer helps (an open question of earlier reproductions)"]
    assert "NICE-perm K=20: +0.30 ± 0.14" in scaling["evidence"]  # one seed each: the whole spread
    assert scaling["verdict"] == "not tested" and scaling["ours"] == "+0.30 ± 0.14" and scaling["margin"] == "—"
    table = {r["model"]: r for r in seed_table(configs, made)}
    assert list(table) == ["DLGM diagonal", "DLGM+planar K=20"] and table["DLGM+planar K=20"]["seeds"] == "0, 1, 2"
    assert table["DLGM+planar K=20"]["gain over diagonal, mean ± sd"] == "-0.90 ± 0.10"
    assert table["DLGM diagonal"]["gain over diagonal, mean ± sd"] == "—"
    ladder = {r["model"]: r for r in ladder_table(configs, made)}
    assert ladder["DLGM+planar K=20"]["gain over diagonal"].startswith("-1.00 ± ")  # seed 0
    assert (
        ladder["DLGM+planar K=10"]["paper −ln p(x)"] == "87.5" and ladder["DLGM diagonal"]["gain over diagonal"] == "—"
    )


def test_conv_ladder_table_and_reading_pair_the_families_at_equal_length(tmp_path):
    families = [["conv", k] for k in (5, 10, 20)] + [[f, k] for f in ("planar", "nice-perm") for k in (10, 20)]
    ladder = {**LADDER, "models": [["none", 0], *families]}
    configs = report_configs(STUDY, ladder, "Adam")
    base = 89.5 + torch.randn(1000, generator=torch.Generator().manual_seed(2))
    gain = {("conv", 5): -0.6, ("conv", 10): -0.8, ("conv", 20): -0.5, ("planar", 10): -0.3, ("planar", 20): -0.3}
    gain.update({("nice-perm", 10): -0.8, ("nice-perm", 20): -1.0})
    made = []
    for i, c in enumerate(configs):
        noise = 0.05 * torch.randn(1000, generator=torch.Generator().manual_seed(10 + i))
        made.append(fake_run(c, base + gain.get((c["flow"], c["length"]), 0.0) + noise, tmp_path))
    rows = {r["flow"]: r for r in conv_ladder_table(configs, made)}
    assert list(rows["convolutional"]) == ["flow", "K=5", "K=10", "K=20"]
    assert rows["convolutional"]["K=10"].startswith("-0.80 ± ") and rows["planar"]["K=5"] == "—"
    assert rows["NICE-perm+scale"]["K=10"] == "—"  # not in this ladder
    text = conv_ladder_reading(configs, made)
    assert "At $K = 10$ the convolutional flow is 0.50 ± 0.00 nats ahead of planar; level (" in text
    assert "nats) with NICE-perm. At $K = 20$ the convolutional flow is 0.20 ± 0.00 nats ahead of planar; " in text
    assert "0.50 ± 0.00 nats behind NICE-perm." in text
    assert "From $K = 5$ to $K = 10$ its $-\\ln p(x)$ falls (-0.20" in text
    assert "From $K = 10$ to $K = 20$ its $-\\ln p(x)$ rises (+0.30" in text
    made[configs.index(next(c for c in configs if c["flow"] == "conv" and c["length"] == 20))] = None
    rows = {r["flow"]: r for r in conv_ladder_table(configs, made)}
    assert rows["convolutional"]["K=20"] == "not trained yet"
    assert conv_ladder_reading(configs, made).endswith("Not trained yet: the convolutional flow at K=20.")
    assert conv_ladder_reading(configs, [None] * len(configs)).startswith("No convolutional flow")


def test_a_comparison_averaged_over_seeds_says_so(tmp_path):
    nice = [["nice-perm", 20], ["nice-perm+scale", 20]]
    ladder = {**LADDER, "models": [*LADDER["models"], *nice], "seeded": nice, "seeds": [0, 1, 2]}
    configs = report_configs(STUDY, ladder, "Adam")
    base = 89.5 + torch.randn(1000, generator=torch.Generator().manual_seed(2))
    shift = {"none": 0.0, "planar": -1.0, "nice-perm": -0.5, "nice-perm+scale": -0.8}
    made = [fake_run(c, base + shift[c["flow"]] + 0.01 * c["seed"], tmp_path) for c in configs]
    rows = {r["claim"]: r for r in mnist_verdicts(STUDY, {}, configs, made)}
    scaling = rows["NICE's diagonal scaling layer helps (an open question of earlier reproductions)"]
    assert "NICE-perm K=20: +0.30 ± " in scaling["evidence"]
    assert "with the scaling (NICE-perm K=20: mean of 3 seeds): NICE-perm K=20: +0.30 ± 0.01" in scaling["evidence"]
    assert scaling["verdict"] == "not tested"  # NICE-orth is not in this ladder


def test_the_start_check_is_the_study_run_of_the_chosen_recipe_started_at_the_identity():
    from nf.experiments.mnist_study import start_check_config

    assert start_check_config(STUDY, "Adam") is None  # the study names no identity-start model
    study = {**STUDY, "identity_start": ["planar", 20]}
    check = start_check_config(study, "Adam, flow step x0.1")
    random = study_configs(study)["Adam, flow step x0.1"][1]
    assert check == {**random, "flow_start": "identity"} and check["protocol"] == "validation"
    with pytest.raises(ValueError, match=r"identity_start=\['planar', 40\] is not among the study's models"):
        start_check_config({**study, "identity_start": ["planar", 40]}, "Adam")


@pytest.mark.parametrize(
    "shift,called",
    [
        (-0.5, "-0.50 ± 0.10 nats in $-\\ln p(x)$; the identity start **would be chosen**"),
        (-0.15, "-0.15 ± 0.10 nats in $-\\ln p(x)$; the identity start **would not be chosen**"),
        (0.5, "+0.50 ± 0.10 nats in $-\\ln p(x)$; the identity start **would not be chosen**"),
    ],
)
def test_the_identity_start_is_chosen_only_when_decidedly_better_on_validation(tmp_path, shift, called):
    from nf.experiments.mnist_study import start_check_config
    from nf.report.identity_start import start_choice
    from nf.report.mnist_verdicts import SeedNoise

    study = {**STUDY, "identity_start": ["planar", 20]}
    runs = study_runs(tmp_path, {"paper's RMSprop": -3.0, "Adam": -0.3, "Adam, flow step x0.1": -0.8})
    check = start_check_config(study, "Adam, flow step x0.1")
    base = runs["Adam, flow step x0.1"][1].load_tensors("scores.pt")["nll"]
    started = fake_run(check, base + shift, tmp_path)
    noise = SeedNoise(dict.fromkeys(("nll", "bound", "kl"), 0.0), dict.fromkeys(("nll", "bound", "kl"), 0.1), "x")
    text = start_choice(study, runs, "Adam, flow step x0.1", started, noise)
    assert "planar K=20 under *Adam, flow step x0.1* started at the identity minus started at random" in text
    assert called in text
    waiting = start_choice(study, runs, "Adam, flow step x0.1", None, noise)
    assert "**Not tested**: the identity-started run of planar K=20 (Adam, flow step x0.1)" in waiting
