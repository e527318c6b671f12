"""Table 2 and Fig. 4 in the paper's own regime: budget points found, shown and judged (made-up per-image scores, no
training)."""

from __future__ import annotations

import json

import pytest
import torch
from test_mnist_study import STUDY, fake_run

from nf.experiments.mnist import budget_config
from nf.experiments.mnist_study import regime_configs, regime_runs, regime_seed_configs, regime_seed_runs
from nf.report.mnist_verdicts import LADDER_CLAIMS, PAIR_CLAIM, SeedNoise, seed_noise
from nf.report.paper_regime import (
    ACROSS,
    PAPER_RECIPE_COLUMN,
    across_recipes,
    common_budget,
    regime_noise,
    regime_seed_note,
    regime_seed_section,
    regime_table,
    regime_verdicts,
    verdicts_across_recipes,
    with_paper_recipe,
)
from nf.report.style import family_colour
from nf.runs.cache import config_hash

REGIME = {
    "models": [["none", 0], *[["planar", k] for k in (10, 20, 40, 80)]],
    "common": {"protocol": "test", "updates": 300_000, "anneal_updates": 10_000, "eval_every": 2500},
}
BASE = 90 + torch.randn(1000, generator=torch.Generator().manual_seed(0))


def _noise(gain: float, level: float = 0.0) -> SeedNoise:
    """A spread over training seeds of ``gain`` for every paired difference and ``level`` for every model's number."""
    return SeedNoise(dict.fromkeys(("nll", "bound", "kl"), level), dict.fromkeys(("nll", "bound", "kl"), gain), "x")


def _store(config, updates, gain, tmp_path):
    """The run of ``config`` at ``updates`` (a budget point, or the run itself): ``gain`` nats from BASE per image."""
    point = config if updates == config["updates"] else budget_config(config, updates)
    return fake_run(point, BASE + gain, tmp_path)


def test_regime_runs_use_the_paper_recipe_and_find_every_budget_point(tmp_path):
    configs = regime_configs(STUDY, REGIME)
    assert {(c["optimizer"], c["learning_rate"], c["protocol"]) for c in configs} == {("rmsprop", 1e-5, "test")}
    for updates, level in ((100_000, 0.0), (200_000, 0.0), (300_000, -0.5)):
        _store(configs[0], updates, level, tmp_path)
    for updates in (100_000, 200_000):
        _store(configs[2], updates, -1.0, tmp_path)
    found = regime_runs(configs, tmp_path)
    assert [sorted(points) for points in found] == [[100_000, 200_000, 300_000], [], [100_000, 200_000], [], []]

    budget, at_budget = common_budget(configs, found)  # the furthest budget every model with a point has reached
    assert budget == 200_000 and [r is not None for r in at_budget] == [True, False, True, False, False]
    assert at_budget[0].config["updates"] == 200_000
    assert common_budget(configs, [{} for _ in configs]) == (None, [None] * len(configs))

    rows = {row["model"]: row for row in regime_table(configs, found)}
    assert rows["DLGM diagonal"]["updates"] == "300,000"
    assert rows["DLGM+planar K=20"]["updates"] == "200,000 so far"  # a run still training says so
    assert rows["DLGM+planar K=20"]["gain over diagonal (at updates)"] == "-1.00 ± 0.00 (200,000)"
    assert rows["DLGM+planar K=20"]["diagonal −ln p(x) there"] == "90.03 ± 0.10"  # at 200,000, not at 300,000
    assert rows["DLGM diagonal"]["diagonal −ln p(x) there"] == "—"
    assert rows["DLGM+planar K=20"]["paper gain"] == "-3.4"
    assert rows["DLGM+planar K=10"]["updates"] == "not trained yet"

    table2 = [{"model": m, "paper −ln p(x)": "", "ours −ln p(x)": "", "KL": ""} for m in rows] + [
        {"model": "DLGM+nice-perm K=10", "paper −ln p(x)": "", "ours −ln p(x)": "", "KL": ""}
    ]
    column = {row["model"]: row for row in with_paper_recipe(table2, configs, found)}
    assert list(column["DLGM diagonal"]) == ["model", "paper −ln p(x)", "ours −ln p(x)", PAPER_RECIPE_COLUMN, "KL"]
    assert column["DLGM diagonal"][PAPER_RECIPE_COLUMN] == "89.53 ± 0.10 (300,000)"
    assert column["DLGM+planar K=20"][PAPER_RECIPE_COLUMN] == "89.03 ± 0.10 (200,000 so far)"  # says its budget
    assert column["DLGM+planar K=10"][PAPER_RECIPE_COLUMN] == "not trained yet"
    assert column["DLGM+nice-perm K=10"][PAPER_RECIPE_COLUMN] == "—"  # not in the regime's ladder

    verdicts = {row["claim"]: row for row in regime_verdicts(configs, found, _noise(0.1, 0.1))}
    assert verdicts["Table 2: diagonal, −ln p(x)"]["verdict"] == "reproduced"
    planar = verdicts["Table 2: planar K=20, −ln p(x)"]
    assert planar["verdict"] == "not tested"  # a budget point is evidence so far, never the verdict
    assert planar["evidence"].startswith("so far at 200,000 updates ours 89.")
    assert planar["evidence"].endswith("; not at the full budget yet: planar K=20 (200,000 of 300,000 updates)")
    assert verdicts["planar K=20 gives a lower −ln p(x) than the diagonal model (Table 2)"]["verdict"] == "not tested"
    ladder = verdicts["longer planar flows give a lower −ln p(x) (Table 2)"]
    assert ladder["verdict"] == "not tested" and ladder["ours"] == (
        "so far -1.00 ± 0.10 at 200,000 updates (the furthest budget its trained rungs share)"
    )
    assert ladder["evidence"].startswith(
        "so far at 200,000 updates K=0 to 20: -1.00 ± 0.10 (paper -3.4); less than 50%"
    )


def test_a_ladder_still_training_shows_its_fall_at_the_furthest_budget_its_rungs_share(tmp_path):
    configs = regime_configs(STUDY, REGIME)
    for config, gain, furthest in zip(configs, (0.0, -0.5, -1.0, 0.0, -3.0), (300_000, 200_000, 300_000, 0, 200_000)):
        for updates in range(100_000, furthest + 1, 100_000):
            _store(config, updates, gain, tmp_path)
    rows = {row["claim"]: row for row in regime_verdicts(configs, regime_runs(configs, tmp_path), _noise(0.1))}
    ladder = rows["longer planar flows give a lower −ln p(x) (Table 2)"]
    assert ladder["verdict"] == "not tested"  # K=10, 40 and 80 short of the full budget
    assert ladder["evidence"] == (
        "so far at 200,000 updates K=0 to 80 (K=0, 10, 20, 80): -3.00 ± 0.10 (paper -4.8); "
        "not at the full budget yet: planar K=10 (200,000 of 300,000 updates), planar K=80 (200,000 of 300,000 "
        "updates); not trained yet: planar K=40"
    )
    _store(configs[3], 100_000, 0.5, tmp_path)  # K=40 above K=20: the step that rises is named
    rows = {row["claim"]: row for row in regime_verdicts(configs, regime_runs(configs, tmp_path), _noise(0.1))}
    evidence = rows["longer planar flows give a lower −ln p(x) (Table 2)"]["evidence"]
    assert evidence.startswith("so far at 100,000 updates K=0 to 80 (K=0, 10, 20, 40, 80): -3.00 ± 0.10")
    assert "; rises decidedly at step K=20 → 40 by +1.50 ± 0.10;" in evidence and "rising within" not in evidence
    ours = rows["longer planar flows give a lower −ln p(x) (Table 2)"]["ours"]  # the summary cell names it too
    assert ours.endswith("(the furthest budget its trained rungs share); rising decidedly at K=20 → 40")
    within = tmp_path / "within"  # a step that rises within the uncertainty is named too
    for config, gain in zip(configs, (0.0, -0.5, -1.0, -0.9, -3.0)):
        _store(config, 100_000, gain, within)
    rows = {row["claim"]: row for row in regime_verdicts(configs, regime_runs(configs, within), _noise(0.1))}
    evidence = rows["longer planar flows give a lower −ln p(x) (Table 2)"]["evidence"]
    assert "rises decidedly" not in evidence
    assert "; rising within 2 uncertainties: K=20 → 40 by +0.10 ± 0.10" in evidence
    assert "rising" not in rows["longer planar flows give a lower −ln p(x) (Table 2)"]["ours"]  # within: not named
    flat = tmp_path / "flat"  # no decided fall overall: a decided rise is still named
    for config, gain in zip(configs, (0.0, -0.5, -1.0, 0.5, -0.1)):
        _store(config, 100_000, gain, flat)
    rows = {row["claim"]: row for row in regime_verdicts(configs, regime_runs(configs, flat), _noise(0.1))}
    evidence = rows["longer planar flows give a lower −ln p(x) (Table 2)"]["evidence"]
    assert (
        "-0.10 ± 0.10 (paper -4.8): within 2 uncertainties of no change; rises decidedly at step K=20 → 40 by "
        in evidence
    )


def test_fig4_is_judged_in_the_regime_by_the_report_recipes_rule(tmp_path):
    configs = regime_configs(STUDY, REGIME)
    noise = SeedNoise(dict.fromkeys(("nll", "bound", "kl"), 0.0), {"nll": 0.1, "bound": 0.2, "kl": 0.05}, "x")
    gains, gaps = (0.0, -0.5, -1.0, -1.5, -2.0), (3.0, 2.8, 2.6, 2.4, 2.0)  # the KL falls by 1 nat, the bound by 3
    for config, gain, gap in zip(configs, gains, gaps):
        fake_run(budget_config(config, 100_000), BASE + gain, tmp_path, gap)
    rows = {row["claim"]: row for row in regime_verdicts(configs, regime_runs(configs, tmp_path), noise)}
    kl = rows[LADDER_CLAIMS["kl"]]
    assert kl["verdict"] == "not tested" and kl["paper"] == "falls (plot)"  # no rung at the full budget yet
    assert kl["evidence"].startswith("so far at 100,000 updates K=0 to 80 (K=0, 10, 20, 40, 80): -1.00 ± 0.05;")
    for config, gain, gap in zip(configs, gains, (3.0, 2.8, 2.86, 2.4, 2.0)):  # K=10 -> 20 rises a little
        fake_run(config, BASE + gain, tmp_path, gap)
    rows = {row["claim"]: row for row in regime_verdicts(configs, regime_runs(configs, tmp_path), noise)}
    assert rows[LADDER_CLAIMS["bound"]]["verdict"] == "reproduced"  # each quantity with its own spread
    assert rows[LADDER_CLAIMS["bound"]]["evidence"] == "K=0 to 80: -3.00 ± 0.20"
    kl = rows[LADDER_CLAIMS["kl"]]
    assert kl["verdict"] == "reproduced"  # a step rising within its uncertainty is named, and decides nothing
    assert kl["evidence"] == "K=0 to 80: -1.00 ± 0.05; rising within 2 uncertainties: K=10 → 20 by +0.06 ± 0.05"
    assert rows[LADDER_CLAIMS["nll"]]["evidence"].startswith("K=0 to 80: -2.00 ± 0.10 (paper -4.8)")


def test_a_ladder_waits_for_rungs_short_of_the_budget_untrained_or_outside_the_regime(tmp_path):
    regime = {**REGIME, "models": [["none", 0], ["planar", 10]]}  # no planar K=20: the pair cannot be judged
    configs = regime_configs(STUDY, regime)
    _store(configs[1], 100_000, -1.0, tmp_path)
    rows = {row["claim"]: row for row in regime_verdicts(configs, regime_runs(configs, tmp_path), _noise(0.1))}
    assert rows[PAIR_CLAIM]["evidence"] == "not trained yet: diagonal; not a model of the regime: planar K=20"
    assert rows[LADDER_CLAIMS["nll"]]["evidence"] == (
        "not at the full budget yet: planar K=10 (100,000 of 300,000 updates); not trained yet: diagonal"
    )
    alone = regime_configs(STUDY, {**REGIME, "models": [["none", 0]]})
    _store(alone[0], alone[0]["updates"], 0.0, tmp_path)
    rows = {row["claim"]: row for row in regime_verdicts(alone, regime_runs(alone, tmp_path), _noise(0.1))}
    assert rows[LADDER_CLAIMS["kl"]]["evidence"] == "a single rung: nothing to compare"


@pytest.mark.parametrize(
    "seed_sd,verdict,reason",
    [
        (0.6, "not established", "-1.00 ± 0.60 (paper -3.4): within 2 uncertainties of no change"),
        (0.3, "partly", "-1.00 ± 0.30 (paper -3.4); less than 50% of the paper's fall"),
    ],
)
def test_a_gain_of_one_seed_per_model_is_judged_against_the_spread_over_seeds(tmp_path, seed_sd, verdict, reason):
    """A gain of exactly 1 nat on every image has no paired error at all; retraining noise decides."""
    configs = regime_configs(STUDY, REGIME)
    for config, gain in zip(configs, (0.0, -0.5, -1.0, -1.5, -2.0)):
        _store(config, 300_000, gain, tmp_path)
    rows = {row["claim"]: row for row in regime_verdicts(configs, regime_runs(configs, tmp_path), _noise(seed_sd))}
    claim = rows["planar K=20 gives a lower −ln p(x) than the diagonal model (Table 2)"]
    assert (claim["verdict"], claim["evidence"]) == (verdict, f"K=0 to 20: {reason}")


def test_two_recipes_read_together():
    assert across_recipes("reproduced", "reproduced") == ACROSS[0] == "reproduced under both"
    assert across_recipes("not reproduced", "reproduced") == "only in the paper's regime"
    assert across_recipes("reproduced", "not reproduced") == "only under our recipe"
    assert across_recipes("not reproduced", "not reproduced") == "in neither"
    assert across_recipes("partly", "reproduced") == "paper's regime: reproduced; our recipe: partly"
    assert across_recipes("reproduced", "not tested") == "not tested in the paper's regime yet"
    (row,) = verdicts_across_recipes(
        [{"claim": "c", "verdict": "not reproduced"}],
        [{"claim": "c", "paper": "1", "verdict": "reproduced", "ours": "-1.00 ± 0.10", "evidence": "e"}],
    )
    assert row["reading"] == "only in the paper's regime" and row["our recipe"] == "not reproduced"
    assert row["paper's regime, ours"] == "-1.00 ± 0.10"
    assert across_recipes("not established", "reproduced") == "paper's regime: reproduced; our recipe: not established"


def test_the_scorecard_shows_the_paper_regime_beside_our_recipe(tmp_path):
    from nf.report.scorecard import REGIME_COLUMN, claims, claims_at_a_glance, claims_evidence, mnist_rows

    configs = regime_configs(STUDY, REGIME)
    _store(configs[0], 300_000, 0.0, tmp_path)
    _store(configs[2], 100_000, -1.0, tmp_path)
    regime = (configs, regime_runs(configs, tmp_path), _noise(0.1, 0.1))
    mnist = (STUDY, {name: [None, None] for name in STUDY["recipes"]}, [], [])
    rows = {row["model"]: row for row in mnist_rows(mnist, regime)}
    assert rows["diagonal"][f"ours, {REGIME_COLUMN}"].endswith("(300,000 updates)")
    assert rows["planar K=20"][f"ours, {REGIME_COLUMN}"].endswith("(100,000 updates so far)")
    assert rows["planar K=40"][f"ours, {REGIME_COLUMN}"] == "not trained yet"
    assert rows["NICE-perm K=80"][f"ours, {REGIME_COLUMN}"] == "— (not a model of that regime)"
    rows = claims(None, mnist, regime)
    glance = {row["claim"]: row for row in claims_at_a_glance(rows)}
    evidence = {row["claim"]: row["evidence"] for row in claims_evidence(rows)}
    assert evidence["Table 2: planar K=20, −ln p(x)"] == "not trained yet: planar K=20"
    diagonal, planar = glance["Table 2: diagonal, −ln p(x)"], glance["Table 2: planar K=20, −ln p(x)"]
    assert diagonal[REGIME_COLUMN].startswith("paper's regime: reproduced; our recipe: not tested; 90.0")
    assert planar[REGIME_COLUMN].startswith("not tested in the paper's regime yet; so far 89.0")
    assert planar[REGIME_COLUMN].endswith(" ± 0.14 at 100,000 updates")  # u: se 0.1 and seed spread 0.1
    assert list(diagonal) == [
        "experiment",
        "claim",
        "paper",
        "ours",
        "verdict, our recipe",
        "margin (u)",
        REGIME_COLUMN,
    ]
    assert glance["Table 2: planar K=20, −ln p(x)"]["verdict, our recipe"] == "not tested"


def test_the_cost_of_the_regime_comes_from_the_budget_points(tmp_path):
    from nf.report.paper_regime import regime_cost

    configs = regime_configs(STUDY, REGIME)
    run = _store(configs[0], 100_000, 0.0, tmp_path)
    metrics = {**run.metrics, "seconds_per_update": 0.036}  # fake runs store no timing: give the one this needs
    (run.path / "metrics.json").write_text(json.dumps(metrics))
    timed = type(run)(run.experiment, run.key, run.path, run.provenance)
    rows = regime_cost(configs, [{100_000: timed}, {}, {}, {}, {}])
    assert rows[0]["trained to"] == "100,000 so far" and rows[0]["hours so far"] == "1.0"
    assert rows[0]["hours for 300,000 (projected)"] == "3.0" and rows[1]["trained to"] == "not trained yet"
    assert rows[-1]["hours so far"] == "1.0" and rows[-1]["run"].endswith("(core-hours)")
    seeded = [{**configs[0], "seed": 1, "updates": 100_000}, {**configs[2], "seed": 1, "updates": 100_000}]
    with_seeds = regime_cost(configs, [{}] * 5, ([configs[0], *seeded], [None, timed, None]))  # seed 0: the regime's
    assert [r["run"] for r in with_seeds[5:7]] == [
        "DLGM diagonal, seed 1 (a 100,000-update run)",
        "DLGM+planar K=20, seed 1 (a 100,000-update run)",
    ]
    assert with_seeds[5]["trained to"] == "100,000" and with_seeds[5]["hours for 300,000 (projected)"] == "1.0"
    assert with_seeds[6]["trained to"] == "not trained yet" and with_seeds[-1]["hours so far"] == "1.0"


def test_a_regime_of_models_the_paper_does_not_report_is_not_tested_and_still_plotted(tmp_path):
    from nf.report.paper_regime import plot_regime

    regime = {**REGIME, "models": [["none", 0], ["planar", 2]]}  # the ci profile's
    configs = regime_configs(STUDY, regime)
    found = regime_runs(configs, tmp_path)
    verdicts = {row["claim"]: row["verdict"] for row in regime_verdicts(configs, found, _noise(0.0))}
    assert set(verdicts.values()) == {"not tested"}
    axes = plot_regime(configs, found)
    assert len(axes[0].lines) >= 1  # the paper's diagonal value, with no run yet


def test_the_gpu_estimate_is_set_beside_the_cpu_time_measured(tmp_path):
    from nf.experiments.cost import UpdateWork
    from nf.report.paper_regime import gpu_reading, regime_gpu_estimate

    configs = regime_configs(STUDY, REGIME)[:2]
    run = _store(configs[0], 100_000, 0.0, tmp_path)
    (run.path / "metrics.json").write_text(json.dumps({**run.metrics, "seconds_per_update": 0.02}))
    found = [{100_000: type(run)(run.experiment, run.key, run.path, run.provenance)}, {}]
    work = {("none", 0): UpdateWork(kernels=200, flops=1e9), ("planar", 10): UpdateWork(kernels=400, flops=1e9)}
    rows = regime_gpu_estimate(configs, found, work)
    assert rows[0]["GPU ms per update (estimate)"] == "2.0" and rows[0]["GPU bound by"] == "launches"  # 200 x 10 µs
    assert (
        rows[0]["CPU ms per update (measured)"] == "20.0"
        and rows[1]["CPU ms per update (measured)"] == "not trained yet"
    )
    assert rows[1]["GPU hours for 300,000 (estimate)"] == "0.3"  # 4 ms x 300,000
    text = gpu_reading(configs, found, work)
    assert text.startswith("Every model is bound by its kernel launches")
    assert text.endswith(
        "the estimate is 10.0 to 10.0 times the speed measured here on one CPU thread, if its assumptions hold."
    )
    work[("planar", 10)] = UpdateWork(kernels=1, flops=1e14)
    assert gpu_reading(configs, found, work).startswith("1 of the 2 models are bound by their kernel launches")


def test_each_flow_length_has_its_own_line_and_the_legend_sits_below_the_panels(tmp_path):
    from nf.report.paper_regime import plot_regime

    configs = regime_configs(STUDY, REGIME)
    for config in configs:
        _store(config, 100_000, -config["length"] / 40, tmp_path)
        _store(config, 200_000, -config["length"] / 40, tmp_path)
    axes = plot_regime(configs, regime_runs(configs, tmp_path))
    styles = {bars.get_label(): bars.lines[0].get_linestyle() for bars in axes[0].containers}
    planar = [styles[f"DLGM+planar K={k}"] for k in (10, 20, 40, 80)]
    assert len(set(planar)) == 4 and planar[-1] == "-" and styles["DLGM diagonal"] == "-"
    assert axes[0].get_legend() is None and len(axes[0].figure.legends) == 1
    colours = [bars.lines[0].get_color() for bars in axes[0].containers if "planar" in bars.get_label()]
    assert (
        len(set(colours)) == 4 and colours[-1] == family_colour("planar").lower()
    )  # the longest in the family's colour
    squares = [line for line in axes[0].lines if line.get_marker() == "s" and len(line.get_xdata())]
    assert squares and all(min(line.get_xdata()) > 300_000 for line in squares)  # clear of our points at 300k


SEEDED = {**REGIME, "seeded": [["none", 0], ["planar", 20]], "seeds": [0, 1, 2], "seeds_at": 100_000}


def test_the_regimes_seed_runs_are_budget_points_of_runs_with_other_seeds():
    configs = regime_configs(STUDY, SEEDED)
    seeds = regime_seed_configs(STUDY, SEEDED)
    assert [(c["flow"], c["length"], c["seed"], c["updates"]) for c in seeds] == [
        ("none", 0, 1, 100_000),
        ("planar", 20, 1, 100_000),
        ("none", 0, 2, 100_000),
        ("planar", 20, 2, 100_000),
    ]
    longer = [{**c, "seed": 1} for c in configs if (c["flow"], c["length"]) in (("none", 0), ("planar", 20))]
    assert [config_hash("mnist", budget_config(c, 100_000)) for c in longer] == [
        config_hash("mnist", c) for c in seeds[:2]
    ]  # the same run as a full-length run's budget point
    assert regime_seed_configs(STUDY, REGIME) == []
    with pytest.raises(ValueError, match=r"paper_regime.seeded: \[\['planar', 30\]\] are not models of the regime"):
        regime_seed_configs(STUDY, {**SEEDED, "seeded": [["planar", 30]]})
    with pytest.raises(ValueError, match=r"paper_regime.seeds: \[1, 2\] lacks seed 0"):
        regime_seed_configs(STUDY, {**SEEDED, "seeds": [1, 2]})
    with pytest.raises(ValueError, match="paper_regime.seeds_at: 150000 updates is neither"):
        regime_seed_configs(STUDY, {**SEEDED, "seeds_at": 150_000})


def test_the_regimes_own_seed_spread_can_widen_its_uncertainties_never_narrow_them(tmp_path):
    configs = regime_configs(STUDY, SEEDED)
    seeds = regime_seed_configs(STUDY, SEEDED)
    _store(configs[0], 100_000, 0.0, tmp_path)
    _store(configs[2], 100_000, -1.0, tmp_path)
    found = regime_runs(configs, tmp_path)
    ours = _noise(0.09, 0.06)
    gathered = regime_seed_runs(configs, found, seeds, tmp_path)
    assert [c["seed"] for c in gathered[0]] == [0, 0, 1, 1, 2, 2]
    assert gathered[1][0] is found[0][100_000] and gathered[1][2:] == [None] * 4
    own = seed_noise(*gathered)
    assert regime_noise(ours, own) == ours  # one seed each: nothing measured yet
    note = regime_seed_note(ours, own, seeds)
    assert note.startswith("**The regime's own spread over training seeds** is not measured yet: DLGM diagonal, ")
    assert "with seeds 1, 2 to 100,000 updates are not trained, so its rules use our recipe's spread (0.06" in note
    for config, shift in zip(seeds, (0.5, 0.0, -0.5, -1.0)):  # sd over seeds: diagonal 0.5, planar about 0.58
        fake_run(config, BASE + shift + (-1.0 if config["length"] else 0.0), tmp_path)
    own = seed_noise(*regime_seed_runs(configs, found, seeds, tmp_path))
    wide = regime_noise(ours, own)
    assert wide.level["nll"] == pytest.approx(own.level["nll"]) and wide.level["nll"] > ours.level["nll"]
    assert wide.measured_on.startswith("x; in the paper's regime: DLGM diagonal (3 seeds)")
    narrow = regime_noise(_noise(9.0, 9.0), own)
    assert narrow.level["nll"] == 9.0 and narrow.gain["nll"] == 9.0
    mixed = regime_noise(_noise(0.01, 9.0), own)  # each quantity takes its own larger
    assert mixed.level["nll"] == 9.0 and mixed.gain["nll"] == pytest.approx(own.gain["nll"])
    assert own.gain["nll"] > 0.01
    unmeasured = SeedNoise(ours.level, ours.gain, "")
    assert regime_noise(unmeasured, own).measured_on.startswith("in the paper's regime: DLGM diagonal")
    note = regime_seed_note(ours, own, seeds)
    assert f"{own.level['nll']:.2f} nats for a model's $-\\ln p(x)$" in note
    assert note.endswith(f"the regime's rules use the larger, {wide.level['nll']:.2f} and {wide.gain['nll']:.2f}.")
    section = regime_seed_section(ours, own, seeds, regime_seed_runs(configs, found, seeds, tmp_path))
    assert section.startswith("| model |") and section.endswith(note)  # the seed table, then the note
    assert regime_seed_section(ours, seed_noise(*gathered), seeds, gathered).startswith("**The regime's own spread")
