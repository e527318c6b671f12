"""The identity-start rule (nf.report.identity_start) on runs with made-up per-image scores, both sides of each
threshold."""

from __future__ import annotations

import pytest
import torch
from test_mnist_study import fake_run

from nf.experiments.mnist import mnist_config
from nf.report.identity_start import (
    LOSS_TOLERANCE,
    conv_verdict,
    identity_start_conclusion,
    identity_start_reading,
    identity_start_table,
    identity_start_verdict,
    plot_start_curves,
    start_and_regime,
    start_sensitivity,
)
from nf.report.mnist_verdicts import SeedNoise

IMAGES = 2000


def _noise(gain: float) -> SeedNoise:
    return SeedNoise(dict.fromkeys(("nll", "bound", "kl"), 0.0), dict.fromkeys(("nll", "bound", "kl"), gain), "x")


def _runs(tmp_path, start: str, loss: float, seed: int) -> dict[int, object]:
    """Conv K=5 and K=20 of one start, K=20 ``loss`` nats behind K=5 on average, each run with its own image noise
    (standard deviation 0.5 per image: a paired standard error of about 0.016)."""
    base = 90 + torch.randn(IMAGES, generator=torch.Generator().manual_seed(0))
    runs = {}
    for k, shift in ((5, 0.0), (20, loss)):
        noise = 0.5 * torch.randn(IMAGES, generator=torch.Generator().manual_seed(seed + k))
        noise -= noise.mean()
        config = mnist_config(flow="conv", length=k, protocol="test", updates=50, anneal_updates=10, flow_start=start)
        runs[k] = fake_run(config, base + shift + noise, tmp_path / f"{start}-{seed}")
    return runs


@pytest.mark.parametrize(
    "identity_loss,gain_sd,verdict",
    [
        (0.0, 0.05, "supported"),  # 0.5 nat below the tolerance, u about 0.05
        (LOSS_TOLERANCE - 0.05, 0.05, "not established"),  # within two uncertainties of the tolerance
        (LOSS_TOLERANCE + 0.05, 0.05, "not established"),
        (1.0, 0.05, "not supported"),
        (0.0, 0.3, "not established"),  # the same removal, but retraining moves a difference by 0.3 nats
    ],
)
def test_the_rule_on_both_sides_of_the_tolerance(tmp_path, identity_loss, gain_sd, verdict):
    random = _runs(tmp_path, "random", 6.0, seed=1)
    identity = _runs(tmp_path, "identity", identity_loss, seed=2)
    result = identity_start_verdict(random, identity, _noise(gain_sd))
    assert result.verdict == verdict
    assert result.ours.startswith(f"{identity_loss:+.2f}")
    assert "(decided)" in result.reason  # a change of about 5 nats against u <= 0.43


def test_a_start_that_changes_nothing_is_told_apart(tmp_path):
    random = _runs(tmp_path, "random", 6.0, seed=1)
    identity = _runs(tmp_path, "identity", 6.0, seed=2)
    result = identity_start_verdict(random, identity, _noise(0.05))
    assert result.verdict == "not supported"
    assert "by +0.00 ± 0.07 (not decided)" in result.reason
    paired_se = 0.5 * 2**0.5 / IMAGES**0.5
    assert result.margin == pytest.approx((6.0 - LOSS_TOLERANCE) / (0.05**2 + paired_se**2) ** 0.5, rel=0.03)


def test_missing_runs_leave_the_hypothesis_untested(tmp_path):
    random = _runs(tmp_path, "random", 6.0, seed=1)
    identity = _runs(tmp_path, "identity", 0.0, seed=2)
    del identity[20]
    result = identity_start_verdict(random, identity, _noise(0.05))
    assert result.verdict == "not tested" and "conv K=20 (identity start)" in result.reason
    assert identity_start_reading(result).startswith(
        "*The identity start removes the convolutional flow's loss with K*: **not tested**; not trained yet: conv K=20"
    )


def test_the_table_and_the_verdict_read_the_ladder_and_its_identity_start(tmp_path):
    common = {"protocol": "test", "updates": 50, "anneal_updates": 10}
    ladder = [mnist_config(flow=f, length=k, **common) for f, k in (("none", 0), ("conv", 5), ("conv", 20))]
    identity = [mnist_config(flow="conv", length=k, flow_start="identity", **common) for k in (5, 20)]
    base = 90 + torch.randn(IMAGES, generator=torch.Generator().manual_seed(0))
    shifts = [0.0, -0.6, 5.4, -0.7, -0.5]  # diagonal, random-start conv K=5, 20, identity-start conv K=5, 20
    runs = [
        fake_run(c, base + shift + 0.1 * torch.randn(IMAGES, generator=torch.Generator().manual_seed(i)), tmp_path)
        for i, (c, shift) in enumerate(zip(ladder + identity, shifts))
    ]
    pairs = (ladder, runs[:3]), (identity, runs[3:])
    rows = identity_start_table(*pairs, _noise(0.09))
    assert [r["model"] for r in rows] == ["convolutional K=5", "convolutional K=20"]
    assert rows[1]["random start, minus diagonal"].startswith("+5.40 ± 0.09")
    assert rows[1]["identity minus random start"].startswith("-5.90 ± 0.09")
    verdict = conv_verdict(*pairs, _noise(0.09))
    assert verdict.verdict == "supported" and verdict.ours.startswith("+0.20 ± 0.09")  # 0.3 nat below, 3.3 u
    assert (
        "not trained yet"
        in identity_start_table((ladder, runs[:3]), (identity, [runs[3], None]), _noise(0.09))[1][
            "identity start, minus diagonal"
        ]
    )


def test_the_planar_sensitivity_check_reads_each_model_trained_with_both_starts(tmp_path):
    common = {"protocol": "test", "updates": 50, "anneal_updates": 10}
    models = (("planar", 20), ("planar", 80))
    ladder = [mnist_config(flow=f, length=k, **common) for f, k in (("none", 0), *models)]
    identity = [mnist_config(flow=f, length=k, flow_start="identity", **common) for f, k in models]
    base = 90 + torch.randn(IMAGES, generator=torch.Generator().manual_seed(0))
    shifts = [0.0, -0.5, -0.6, -0.55, -1.2]  # diagonal, random-start K=20, 80, identity-start K=20, 80
    runs = [
        fake_run(c, base + shift + 0.1 * torch.randn(IMAGES, generator=torch.Generator().manual_seed(i)), tmp_path)
        for i, (c, shift) in enumerate(zip(ladder + identity, shifts))
    ]
    text = start_sensitivity((ladder, runs[:3]), (identity, runs[3:]), _noise(0.09), "planar")
    assert "planar K=20 -0.05 ± 0.09 nats (not decided: within 2 u of zero)" in text  # 0.05 nat, under 2 u
    assert "planar K=80 -0.60 ± 0.09 nats (decided)" in text
    rows = identity_start_table((ladder, runs[:3]), (identity, runs[3:]), _noise(0.09), flow="planar")
    assert [r["model"] for r in rows] == ["planar K=20", "planar K=80"]
    assert identity_start_table((ladder, runs[:3]), (identity, runs[3:]), _noise(0.09), flow="conv") == []
    waiting = start_sensitivity((ladder, runs[:3]), (identity, [runs[3], None]), _noise(0.09), "planar")
    assert waiting.endswith("Not trained yet with both starts: planar K=80.")


def _ladder_and_identity(tmp_path, shifts):
    """The report ladder (diagonal, conv K=5, 20) and its identity start (conv K=5, 20), each run ``shift`` nats
    from a common base with its own small image noise; ``shifts`` in that order."""
    common = {"protocol": "test", "updates": 50, "anneal_updates": 10}
    ladder = [mnist_config(flow=f, length=k, **common) for f, k in (("none", 0), ("conv", 5), ("conv", 20))]
    identity = [mnist_config(flow="conv", length=k, flow_start="identity", **common) for k in (5, 20)]
    base = 90 + torch.randn(IMAGES, generator=torch.Generator().manual_seed(0))
    runs = [
        fake_run(c, base + shift + 0.1 * torch.randn(IMAGES, generator=torch.Generator().manual_seed(i)), tmp_path)
        for i, (c, shift) in enumerate(zip(ladder + identity, shifts))
    ]
    return (ladder, runs[:3]), (identity, runs[3:])


@pytest.mark.parametrize(
    "shifts,reading",
    [
        ([0.0, -0.6, 5.4, -0.7, -0.5], "to the shortest (margin 3.3 $u$)."),  # +0.20: not ahead
        ([0.0, -0.6, 5.4, -0.7, -1.5], "it is in fact ahead of it, by 0.80 ± 0.09 nats"),
        ([0.0, -0.6, 5.4, -0.7, -0.2], "**The experiment does not decide**"),
        ([0.0, -0.6, 5.4, -0.7, 2.0], "**The start explains part of the loss, not all of it**"),
        ([0.0, -0.6, 5.4, -0.6, 5.4], "**The start is not the cause**"),
        ([0.0, -0.6, 5.4, -0.6, 8.0], "makes that loss larger"),
    ],
)
def test_the_conclusion_follows_the_verdict(tmp_path, shifts, reading):
    ladder, identity = _ladder_and_identity(tmp_path, shifts)
    text = identity_start_conclusion(ladder, identity, _noise(0.09))
    assert reading in text
    assert f"$K = 20$ {shifts[4]:+.2f} ± 0.09 (random start +5.40 ± 0.09)" in text
    if shifts[3:] == shifts[1:3]:
        assert "by +0.00 ± 0.13 nats, within 2 u of nothing" in text


def test_the_conclusion_waits_for_every_run(tmp_path):
    (ladder, ladder_runs), (identity, runs) = _ladder_and_identity(tmp_path, [0.0, -0.6, 5.4, -0.7, -0.5])
    text = identity_start_conclusion((ladder, ladder_runs), (identity, [runs[0], None]), _noise(0.09))
    assert text.startswith("The start stays an untested explanation") and "conv K=20 (identity start)" in text


def test_the_start_curves_draw_each_start_in_its_panel_with_matching_styles(tmp_path):
    import matplotlib.pyplot as plt

    ladder, identity = _ladder_and_identity(tmp_path, [0.0, -0.6, 5.4, -0.7, -0.5])
    for i, run in enumerate(ladder[1] + identity[1]):  # training bounds: the diagonal's 95, each flow i nats above
        run.metrics["history"] = [[u, min(1.0, u / 10), 95.0 + i] for u in (10, 20, 30, 40, 50)]
    random, started = plot_start_curves(ladder, identity)
    assert [a.get_title() for a in (random, started)] == ["random start", "identity start"]
    lines = {ax: {line.get_label(): line for line in ax.get_lines()} for ax in (random, started)}
    assert list(lines[started]["DLGM+conv K=20"].get_ydata()) == [4.0] * 4  # after the annealing (10)
    for label in ("DLGM+conv K=5", "DLGM+conv K=20"):
        assert lines[random][label].get_linestyle() == lines[started][label].get_linestyle()
    _, waiting = plot_start_curves(ladder, (identity[0], [identity[1][0], None]))  # conv K=20 not trained yet
    labels = [line.get_label() for line in waiting.get_lines()]
    assert "DLGM+conv K=5" in labels and "DLGM+conv K=20" not in labels
    plt.close("all")


GAP = "the gap between the two recipes' random-start gains"


@pytest.mark.parametrize(
    "identity_shift,compared,closes",
    [
        (
            -2.9,
            "+0.10 ± 0.16 (within 2 u: not decidedly different)",
            f"closes {GAP} within the uncertainty (96% of it as measured)",
        ),
        (
            -3.2,
            "-0.20 ± 0.16 (within 2 u: not decidedly different)",
            f"closes {GAP} within the uncertainty (108% of it as measured)",
        ),
        (-3.6, "-0.60 ± 0.16 (decidedly larger)", f"more than closes {GAP} (124% of it)"),
        (-1.0, "+2.00 ± 0.16 (decidedly smaller)", f"closes 20% of {GAP}"),
        (0.1, "+3.10 ± 0.16 (decidedly smaller)", f"widens {GAP} (by 24% of it)"),
    ],
)
def test_the_start_is_read_against_the_paper_regime_at_the_same_budget(tmp_path, identity_shift, compared, closes):
    common = {"protocol": "test", "updates": 50, "anneal_updates": 10}
    ladder = [mnist_config(flow=f, length=k, **common) for f, k in (("none", 0), ("planar", 20), ("planar", 80))]
    identity = [mnist_config(flow="planar", length=k, flow_start="identity", **common) for k in (20, 80)]
    regime = [mnist_config(flow=f, length=k, optimizer="rmsprop", **common) for f, k in (("none", 0), ("planar", 20))]
    base = 90 + torch.randn(IMAGES, generator=torch.Generator().manual_seed(0))
    shifts = [0.0, -0.5, -1.2, identity_shift, 0.5, -2.5]  # ladder 0/20/80, identity 20, regime 0/20
    runs = [
        fake_run(c, base + shift + 0.1 * torch.randn(IMAGES, generator=torch.Generator().manual_seed(i)), tmp_path)
        for i, (c, shift) in enumerate(zip(ladder + identity[:1] + regime, shifts))
    ]
    found = [{50: runs[4]}, {50: runs[5]}]
    text = start_and_regime(
        (ladder, runs[:3]), (identity, [runs[3], None]), (regime, found), _noise(0.09), _noise(0.13)
    )
    started = f"For planar K=20 under our recipe: {identity_shift:+.2f} ± 0.09 started at the identity"
    assert f"{started}, -0.50 ± 0.09 started at random" in text
    assert "in the paper's regime (random start) -3.00 ± 0.13 at the same 50 updates" in text  # the regime's spread
    assert f"is {compared}, so the start {closes}." in text
    assert text.endswith("Not trained yet with both starts: planar K=80.")
    early = start_and_regime(
        (ladder, runs[:3]), (identity, [runs[3], None]), (regime, [{}, {}]), _noise(0.09), _noise(0.13)
    )
    assert "the paper's regime has no budget point of it at 50 updates yet." in early
