"""Which story the paper's regime supports (nf.report.regime_story), on made-up budget points, both sides of each
threshold."""

from __future__ import annotations

import pytest
from test_mnist_study import STUDY
from test_paper_regime import REGIME, _noise, _store

from nf.experiments.mnist_study import regime_configs, regime_runs
from nf.report.regime_story import paper_gain, story_reading, story_rule


def _regime(tmp_path, gains: dict[int, dict[int, float]]):
    """The regime's runs with ``gains[K][updates]`` nats from the diagonal model (0 at every budget) per image."""
    configs = regime_configs(STUDY, REGIME)
    for config in configs:
        k = config["length"]
        for updates, gain in (gains.get(k, {}) if k else dict.fromkeys((100_000, 200_000, 300_000), 0.0)).items():
            _store(config, updates, gain, tmp_path)
    return configs, regime_runs(configs, tmp_path)


def test_the_papers_gains_are_taken_from_table_2():
    assert paper_gain(("planar", 20)) == pytest.approx(-3.4) and paper_gain(("planar", 80)) == pytest.approx(-4.8)


@pytest.mark.parametrize(
    "k20,k80,story,k20_reading",
    [
        (
            (-3.0, -2.0),
            (-4.0, -2.8),
            "**The gains last**",
            "*the gains last*",
        ),  # -2.0 is 0.3 past half of -3.4, u = 0.1
        ((-3.0, -0.5), (-4.0, -1.0), "**The gains fade**", "*the gains fade*"),
        ((-3.0, -1.75), (-4.0, -2.8), "**Neither story is decided**", "*neither decided*"),  # 0.5 u from half
        ((-0.5, -0.5), (-4.0, -1.0), "**Neither story is decided**", "*neither decided*"),  # small, but not shrinking
        ((-3.0, -2.0), (-4.0, -1.0), "**Neither story is decided**", "*the gains last*"),  # the models disagree
    ],
)
def test_the_story_at_the_full_budget(tmp_path, k20, k80, story, k20_reading):
    gains = {k: {100_000: first, 300_000: last} for k, (first, last) in ((20, k20), (80, k80))}
    text = story_reading(*_regime(tmp_path, gains), _noise(0.1))
    assert text.startswith(story)
    assert f"planar K=20: {k20_reading} (gain over the diagonal model {k20[0]:+.2f} ± 0.10 at 100,000, " in text
    assert f"; the gain changed by {k20[1] - k20[0]:+.2f} ± 0.10 since 100,000: " in text  # whatever the reading


def test_a_shrinking_gain_is_judged_on_the_same_images(tmp_path):
    gains = {20: {100_000: -3.0, 300_000: -0.5}, 80: {100_000: -4.0, 300_000: -1.0}}
    text = story_reading(*_regime(tmp_path, gains), _noise(0.1))
    assert "changed by +2.50 ± 0.10 since 100,000: less than 50% of the paper's gain, decidedly, and shrinking" in text


def test_runs_short_of_the_full_budget_leave_the_story_untested(tmp_path):
    gains = {20: {100_000: -3.0, 200_000: -2.5}, 80: {100_000: -4.0, 300_000: -2.8}}
    text = story_reading(*_regime(tmp_path, gains), _noise(0.1))
    assert text.startswith("**Not tested yet**")
    assert (
        "planar K=20: *not tested* (so far gain over the diagonal model -3.00 ± 0.10 at 100,000, -2.50 ± 0.10 at "
        "200,000 updates (paper -3.4); the gain changed by +0.50 ± 0.10 since 100,000; the full budget is 300,000 "
        "updates)"
    ) in text
    assert "planar K=80: *the gains last*" in text
    empty = story_reading(*_regime(tmp_path / "none", {}), _noise(0.1))
    assert "planar K=20: *not tested* (no budget point of both runs yet)" in empty


def test_a_small_gain_that_did_not_shrink_is_neither_story(tmp_path):
    grown = story_reading(*_regime(tmp_path / "grown", {20: {100_000: -0.2, 300_000: -0.8}}), _noise(0.1))
    assert "-0.80 ± 0.10 at 300,000 updates (paper -3.4); the gain changed by -0.60 ± 0.10 since 100,000: " in grown
    assert "less than 50% of the paper's gain, decidedly, but not decidedly shrinking" in grown
    alone = story_reading(*_regime(tmp_path / "alone", {20: {300_000: -0.5}}), _noise(0.1))
    assert (
        "-0.50 ± 0.10 at 300,000 updates (paper -3.4): less than 50% of the paper's gain, decidedly, but no " in alone
    )


def test_the_rule_is_written_from_the_constants(monkeypatch):
    assert "at least 50% of $P$ by more than 2 uncertainties" in story_rule()
    monkeypatch.setattr("nf.report.regime_story.GAIN_FRACTION", 0.25)
    monkeypatch.setattr("nf.report.regime_story.SIGNIFICANT", 3.0)
    assert "at least 25% of $P$ by more than 3 uncertainties" in story_rule()
