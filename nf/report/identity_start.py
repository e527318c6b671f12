"""Does the identity start remove the convolutional flow's loss with K?  The rule, stated before its runs.

With the random start (``nf.models.flow_start``) the convolutional flow on the MNIST report ladder gets *worse*
with its length: conv ``K = 5`` is ahead of the diagonal model, ``K = 10`` and ``K = 20`` behind it, with the KL
to the posterior rising with ``K``.  The conv chapter's hypothesis: a longer flow starts further from the
identity (its inference network's flow outputs start at random, and its gates compound), so the loss with ``K``
comes from the start.  The experiment retrains conv ``K = 5, 10, 20`` (and, as a sensitivity check, planar
``K = 20, 80``) with every layer the identity at the first update, everything else as in the report ladder.

**The rule** (this module was committed before any identity-start run was trained):

* The **loss with K** of a start is ``L = g(20) - g(5)``: the paired change in ``-ln p(x)`` from conv ``K = 5``
  to conv ``K = 20`` on the same test images (``g(K)``: conv ``K`` minus the diagonal model), with the uncertainty
  of a difference between two separately trained models, ``u = sqrt(se^2 + s^2)`` (``s``: the spread over training
  seeds of a paired difference, ``nf.report.mnist_verdicts.seed_noise``).
* The hypothesis is **supported** ("the identity start removes the loss with K") if the identity start's loss
  ``L_id`` is decidedly below ``LOSS_TOLERANCE`` (by more than ``SIGNIFICANT`` uncertainties: a longer
  identity-started flow loses at most that much to a shorter one); **not supported** ("it does not") if
  ``L_id`` is decidedly above it; **not established** within ``SIGNIFICANT`` uncertainties of it; **not tested**
  while a run is missing.  The margin is ``|L_id - LOSS_TOLERANCE| / u``.
* Whatever the verdict, the reason gives the **change the start makes** to the loss with K,
  ``L_id - L_random`` (four models, all paired on the same images: ``u = sqrt(se^2 + 2 s^2)``), and says whether
  that change is decided, so "it does not remove the loss" is told apart from "it does not change it".

**Would the start be chosen?** (stated, and this code committed, before the run it judges.)  The planar results
above are a sensitivity check on the test set; the report recipe is chosen on the validation split.  So the
recipe study's ``identity_start`` model (planar ``K = 20``) is trained again under the chosen recipe with the
identity start, on the validation split, and ``start_choice`` compares it with the study's randomly started run
of the same recipe: the identity start **would be chosen** if it lowers validation ``-ln p(x)`` (all validation
images, paired) by more than ``SIGNIFICANT`` uncertainties ``u = sqrt(se^2 + s^2)``, and **would not be chosen**
otherwise (the random start stays, as the study keeps plain Adam unless the slower flow step is decidedly
better); **not tested** while the run is missing.  "Would be": Table 2's ladder keeps the random start until it
is trained again with the identity start.
"""

from __future__ import annotations

import math
from typing import Any

from nf.experiments.comparisons import SIGNIFICANT, gain_difference
from nf.experiments.mnist import full_config
from nf.report.conv import plot_training_gap
from nf.report.mnist import NOT_TRAINED, model_key, signed
from nf.report.mnist_verdicts import SeedNoise, separately_trained
from nf.report.nice import model_label, seed0_models
from nf.report.verdicts import Verdict, margin, not_tested, shown_margin
from nf.runs.cache import Run

LOSS_TOLERANCE = 0.5  # nats: the most a longer identity-started conv flow may lose to conv K=5 for "removed"
SHORT, LONG = 5, 20  # the conv lengths whose difference is the loss with K
HYPOTHESIS = "the identity start removes the convolutional flow's loss with K"


def loss_with_length(runs: dict[int, Run], noise: SeedNoise) -> tuple[float, float]:
    """``L = g(LONG) - g(SHORT)``, paired on the same test images, with ``u = sqrt(se^2 + s^2)``; ``runs``: the conv
    runs of one start by length."""
    return separately_trained(runs[SHORT], runs[LONG], noise)


def change_of_gain(first: tuple[Run, Run], second: tuple[Run, Run], noise: SeedNoise) -> tuple[float, float]:
    """How much the gain of ``second = (a2, b2)`` differs from that of ``first = (a1, b1)``, per image, with
    ``u = sqrt(se^2 + 2 s^2)`` (two differences of separately trained models)."""
    d, se = gain_difference(first, second)
    return d, math.sqrt(se**2 + 2 * noise.gain["nll"] ** 2)


def start_change(random: dict[int, Run], identity: dict[int, Run], noise: SeedNoise) -> tuple[float, float]:
    """``L_id - L_random`` per image (``change_of_gain``)."""
    return change_of_gain((random[SHORT], random[LONG]), (identity[SHORT], identity[LONG]), noise)


def identity_start_verdict(random: dict[int, Run], identity: dict[int, Run], noise: SeedNoise) -> Verdict:
    """The verdict on ``HYPOTHESIS`` by the module's rule; ``random`` and ``identity``: the conv runs of each start
    by length (a missing length absent)."""
    missing = [
        f"conv K={k} ({name} start)"
        for name, runs in (("random", random), ("identity", identity))
        for k in (SHORT, LONG)
        if k not in runs
    ]
    if missing:
        return not_tested(", ".join(missing))
    loss, u = loss_with_length(identity, noise)
    random_loss, random_u = loss_with_length(random, noise)
    change, change_u = start_change(random, identity, noise)
    changed = "decided" if margin(change, 0.0, change_u) > SIGNIFICANT else "not decided"
    text = (
        f"conv K={LONG} minus K={SHORT}: identity start {loss:+.2f} ± {u:.2f}, random start "
        f"{random_loss:+.2f} ± {random_u:.2f}; the identity start changes the loss with K by "
        f"{change:+.2f} ± {change_u:.2f} ({changed})"
    )
    shown = f"{loss:+.2f} ± {u:.2f}"
    m = margin(loss, LOSS_TOLERANCE, u)
    if m <= SIGNIFICANT:
        return Verdict(
            "not established",
            f"{text}; within {SIGNIFICANT:g} uncertainties of the {LOSS_TOLERANCE:g}-nat tolerance: "
            "supported or not supported",
            shown,
            m,
        )
    if loss < LOSS_TOLERANCE:
        return Verdict("supported", text, shown, m)
    return Verdict("not supported", f"{text}; a loss of more than {LOSS_TOLERANCE:g} nat remains", shown, m)


def runs_by_start(
    ladder: tuple[list[dict[str, Any]], list[Run | None]], identity: tuple[list[dict[str, Any]], list[Run | None]]
) -> tuple[list[tuple[str, int]], Run | None, dict[str, dict[tuple[str, int], Run]]]:
    """The models trained with both starts (the identity-start ``configs``' models, in their order), the diagonal
    model's run, and the trained seed-0 runs of each start by model: ``{"random": ..., "identity": ...}``.
    ``ladder``/``identity``: the report ladder's and its identity-start ``(configs, runs)``."""
    _, random = seed0_models(*ladder)
    models, started = seed0_models(*identity)
    return models, random.get(("none", 0)), {"random": random, "identity": started}


def identity_start_table(
    ladder: tuple[list[dict[str, Any]], list[Run | None]],
    identity: tuple[list[dict[str, Any]], list[Run | None]],
    noise: SeedNoise,
    flow: str | None = None,
) -> list[dict[str, str]]:
    """Per model trained with both starts (of the family ``flow`` only, if given): its paired change in
    ``-ln p(x)`` from the diagonal model under each start, and the identity-started model minus the randomly
    started one, each on the same test images with the uncertainty of a difference between separately trained
    models, ``u = sqrt(se^2 + s^2)``."""
    models, diagonal, runs = runs_by_start(ladder, identity)
    models = [m for m in models if flow is None or m[0] == flow]

    rows = []
    for model in models:
        random, started = runs["random"].get(model), runs["identity"].get(model)
        row = {"model": model_label(model)}
        for column, run in (("random start, minus diagonal", random), ("identity start, minus diagonal", started)):
            row[column] = signed(separately_trained(diagonal, run, noise)) if diagonal and run else NOT_TRAINED
        row["identity minus random start"] = (
            signed(separately_trained(random, started, noise)) if random and started else NOT_TRAINED
        )
        rows.append(row)
    return rows


def start_sensitivity(
    ladder: tuple[list[dict[str, Any]], list[Run | None]],
    identity: tuple[list[dict[str, Any]], list[Run | None]],
    noise: SeedNoise,
    flow: str,
) -> str:
    """For each ``flow`` model trained with both starts, the identity-started model minus the randomly started one
    (paired, ``u = sqrt(se^2 + s^2)``) and whether the start decidedly changes it (beyond ``SIGNIFICANT`` u), as
    one sentence; which models are still to train, if any."""
    models, _, runs = runs_by_start(ladder, identity)
    done, missing = [], []
    for model in (m for m in models if m[0] == flow):
        random, started = runs["random"].get(model), runs["identity"].get(model)
        if random is None or started is None:
            missing.append(model_label(model))
            continue
        d, u = separately_trained(random, started, noise)
        called = "decided" if margin(d, 0.0, u) > SIGNIFICANT else f"not decided: within {SIGNIFICANT:g} u of zero"
        done.append(f"{model_label(model)} {d:+.2f} ± {u:.2f} nats ({called})")
    text = []
    if done:
        text.append("The identity start minus the random start, in test $-\\ln p(x)$: " + "; ".join(done) + ".")
    if missing:
        text.append(f"Not trained yet with both starts: {', '.join(missing)}.")
    return " ".join(text) or f"No {flow} model is planned with the identity start."


def conv_verdict(
    ladder: tuple[list[dict[str, Any]], list[Run | None]],
    identity: tuple[list[dict[str, Any]], list[Run | None]],
    noise: SeedNoise,
) -> Verdict:
    """``identity_start_verdict`` on the conv runs of the report ladder and of its identity start."""
    _, _, runs = runs_by_start(ladder, identity)
    by_length = conv_by_length(runs)
    return identity_start_verdict(by_length["random"], by_length["identity"], noise)


def conv_by_length(runs: dict[str, dict[tuple[str, int], Run]]) -> dict[str, dict[int, Run]]:
    """The conv runs of each start by length, from ``runs_by_start``'s runs of each start by model."""
    return {start: {k: r for (f, k), r in found.items() if f == "conv"} for start, found in runs.items()}


def plot_start_curves(
    ladder: tuple[list[dict[str, Any]], list[Run | None]],
    identity: tuple[list[dict[str, Any]], list[Run | None]],
) -> Any:
    """The convolutional flows' training bound minus the diagonal model's (``nf.report.conv.plot_training_gap``)
    under the random start (left) and the identity start (right), on one scale; returns the two axes."""
    import matplotlib.pyplot as plt

    _, diagonal, runs = runs_by_start(ladder, identity)
    conv = {start: [found[k] for k in sorted(found)] for start, found in conv_by_length(runs).items()}
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True, layout="constrained")
    for ax, start in zip(axes, ("random", "identity")):
        plot_training_gap(([diagonal] if diagonal else []) + conv[start], ax=ax, styles_from=conv["random"])
        ax.set_title(f"{start} start")
    axes[1].set_ylabel("")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper")
    return axes


def identity_start_rule() -> str:
    """The rule of the module docstring, written out from the constants the code uses (Markdown)."""
    return (
        f"**The rule, fixed before the identity-start runs were trained.** With $g(K)$ the paired change in "
        f"$-\\ln p(x)$ from the diagonal model to conv $K$, the *loss with K* of a start is "
        f"$L = g({LONG}) - g({SHORT})$: conv $K = {LONG}$ minus conv $K = {SHORT}$ on the same test images, "
        f"with the uncertainty $u$ of a difference between two separately trained models (the paired standard "
        f"error and the spread over training seeds of the MNIST chapter's "
        f"verdicts). The hypothesis that *{HYPOTHESIS}* is **supported** if the identity start's $L$ is below "
        f"{LOSS_TOLERANCE:g} nat by more than {SIGNIFICANT:g} $u$ (a longer identity-started flow loses at most that "
        f"much to a shorter one), **not supported** if it is above {LOSS_TOLERANCE:g} nat by more than "
        f"{SIGNIFICANT:g} $u$, and **not established** in between. The verdict also gives how much the identity "
        f'start changes $L$, and whether that change is decided, so that "it does not remove the loss" is told '
        f'apart from "it changes nothing".'
    )


def identity_start_reading(verdict: Verdict) -> str:
    """The verdict as a sentence: ``verdict`` from ``conv_verdict``."""
    claim = HYPOTHESIS[0].upper() + HYPOTHESIS[1:]
    if verdict.verdict == "not tested":
        return f"*{claim}*: **not tested**; {verdict.reason}."
    return f"*{claim}*: **{verdict.verdict}** (margin {shown_margin(verdict.margin)} $u$); {verdict.reason}."


def identity_start_conclusion(
    ladder: tuple[list[dict[str, Any]], list[Run | None]],
    identity: tuple[list[dict[str, Any]], list[Run | None]],
    noise: SeedNoise,
) -> str:
    """What the experiment showed, for the chapter's closing reading (Markdown): each conv length's paired change
    in ``-ln p(x)`` from the diagonal model under both starts, and what ``conv_verdict`` makes of the explanation
    that the loss with K comes from the start."""
    verdict = conv_verdict(ladder, identity, noise)
    if verdict.verdict == "not tested":
        return f"The start stays an untested explanation until its runs are trained ({verdict.reason})."
    models, diagonal, runs = runs_by_start(ladder, identity)
    gains = []
    for model in (m for m in models if m[0] == "conv"):
        random, started = runs["random"].get(model), runs["identity"].get(model)
        if diagonal and random and started:
            gains.append(
                f"$K = {model[1]}$ {signed(separately_trained(diagonal, started, noise))} "
                f"(random start {signed(separately_trained(diagonal, random, noise))})"
            )
    by_length = conv_by_length(runs)
    identity_loss = loss_with_length(by_length["identity"], noise)
    loss = signed(identity_loss)
    random_loss = signed(loss_with_length(by_length["random"], noise))
    change, change_u = start_change(by_length["random"], by_length["identity"], noise)
    changed = margin(change, 0.0, change_u) > SIGNIFICANT
    text = (
        "Started at the identity, the convolutional flows change $-\\ln p(x)$ from the diagonal model by "
        + "; ".join(gains)
        + f" nats. Conv $K = {LONG}$ minus $K = {SHORT}$ is {loss} with the identity start, {random_loss} with the "
        f"random one: the start changes the loss with $K$ by {change:+.2f} ± {change_u:.2f} nats"
        f"{'' if changed else f', within {SIGNIFICANT:g} u of nothing'}. "
    )
    if verdict.verdict == "supported":
        value, u = identity_loss
        ahead = (
            f"; it is in fact ahead of it, by {-value:.2f} ± {u:.2f} nats, so started at the identity the longer "
            "flow is the better one, as a flow should be"
            if value < -SIGNIFICANT * u
            else ""
        )
        return text + (
            f"**The start was the cause**: at the identity, the longest flow loses at most {LOSS_TOLERANCE:g} nat "
            f"to the shortest (margin {shown_margin(verdict.margin)} $u$){ahead}."
        )
    if verdict.verdict == "not established":
        return text + (
            f"**The experiment does not decide** whether the start is the whole cause: the identity start's loss "
            f"with $K$ is within {SIGNIFICANT:g} $u$ of the {LOSS_TOLERANCE:g}-nat tolerance."
        )
    if changed and change < 0:
        return text + (
            f"**The start explains part of the loss, not all of it**: a loss of more than {LOSS_TOLERANCE:g} nat "
            f"with $K$ remains at the identity (margin {shown_margin(verdict.margin)} $u$), so the rest has another "
            "cause."
        )
    return text + (
        f"**The start is not the cause**: at the identity the longer flow still loses more than "
        f"{LOSS_TOLERANCE:g} nat to the shorter (margin {shown_margin(verdict.margin)} $u$), and the start "
        f"{'makes that loss larger' if changed else 'does not decidedly change it'}; the cause lies elsewhere."
    )


def start_and_regime(
    ladder: tuple[list[dict[str, Any]], list[Run | None]],
    identity: tuple[list[dict[str, Any]], list[Run | None]],
    regime: tuple[list[dict[str, Any]], list[dict[int, Run]]],
    noise: SeedNoise,
    regime_noise: SeedNoise,
) -> str:
    """How the flow's start bears on the recipe question (Markdown): for each planar model trained with both starts
    under our recipe, its gain over the diagonal model with each start (``u = sqrt(se^2 + s^2)``, ``s`` our recipe's
    spread over training seeds, ``noise``), beside the gain of the paper's regime (random start) for the same model
    at the same budget (``s`` the regime's, ``regime_noise``: ``nf.report.paper_regime.regime_noise``), and the
    identity-started gain minus that (four models on the same images: ``u = sqrt(se^2 + s^2 + s_regime^2)``), with
    the share of the gap between the two recipes' random-start gains that the start closes,
    ``(g_id - g_random) / (g_regime - g_random)``.  ``regime``: the paper's regime's configs and budget points
    (``nf.experiments.mnist_study.regime_runs``)."""
    models, diagonal, runs = runs_by_start(ladder, identity)
    points = {model_key(c): found for c, found in zip(*regime)}
    sentences, missing = [], []
    for model in (m for m in models if m[0] == "planar"):
        random, started = runs["random"].get(model), runs["identity"].get(model)
        if diagonal is None or random is None or started is None:
            missing.append(model_label(model))
            continue
        budget = full_config(started.config)["updates"]
        identity_gain, random_gain = (separately_trained(diagonal, r, noise) for r in (started, random))
        text = (
            f"For {model_label(model)} under our recipe: {signed(identity_gain)} started at the identity, "
            f"{signed(random_gain)} started at random"
        )
        regime_diagonal, regime_flow = (points.get(m, {}).get(budget) for m in (("none", 0), model))
        if regime_diagonal is None or regime_flow is None:
            sentences.append(f"{text}; the paper's regime has no budget point of it at {budget:,} updates yet.")
            continue
        regime_gain = separately_trained(regime_diagonal, regime_flow, regime_noise)
        d, se = gain_difference((regime_diagonal, regime_flow), (diagonal, started))
        u = math.sqrt(se**2 + noise.gain["nll"] ** 2 + regime_noise.gain["nll"] ** 2)
        decided = margin(d, 0.0, u) > SIGNIFICANT
        compared = (
            "decidedly " + ("larger" if d < 0 else "smaller")
            if decided
            else f"within {SIGNIFICANT:g} u: not decidedly different"
        )
        text += (
            f"; in the paper's regime (random start) {signed(regime_gain)} at the same {budget:,} updates. The "
            f"identity-started gain minus the paper's regime's is {d:+.2f} ± {u:.2f} ({compared})"
        )
        if regime_gain[0] < random_gain[0]:
            share = (identity_gain[0] - random_gain[0]) / (regime_gain[0] - random_gain[0])
            gap = "the gap between the two recipes' random-start gains"
            if not decided:  # the two gains agree within their uncertainty: the share is no finer than that
                text += f", so the start closes {gap} within the uncertainty ({share:.0%} of it as measured)"
            elif share > 1:
                text += f", so the start more than closes {gap} ({share:.0%} of it)"
            elif share < 0:
                text += f", so the start widens {gap} (by {-share:.0%} of it)"
            else:
                text += f", so the start closes {share:.0%} of {gap}"
        sentences.append(text + ".")
    if missing:
        sentences.append(f"Not trained yet with both starts: {', '.join(missing)}.")
    if not any(m[0] == "planar" for m in models):
        return "No planar model is planned with the identity start."
    return (
        "Each number is a paired change in $-\\ln p(x)$ from the diagonal model (negative: the flow helps; test "
        "set, seed 0). " + " ".join(sentences)
    )


def start_choice_rule() -> str:
    """The rule of the module docstring on whether the start would be chosen, from the constants the code uses."""
    return (
        "**The rule, fixed before its run was trained.** The recipe study's planar $K = 20$ is trained again "
        "under the chosen recipe with every flow layer the identity at the first update, on the validation split. "
        f"The identity start *would be chosen* if it lowers validation $-\\ln p(x)$ (all validation images, paired "
        f"with the study's randomly started run) by more than {SIGNIFICANT:g} uncertainties $u$ (the paired standard "
        "error with the spread over training seeds); otherwise the random start stays, as the study keeps plain "
        "Adam unless the slower flow step is decidedly better."
    )


def start_choice(
    study: dict[str, Any], study_runs: dict[str, list[Run | None]], recipe: str, check: Run | None, noise: SeedNoise
) -> str:
    """Whether the identity start would be chosen on the validation split, by the module's rule (Markdown):
    ``check`` the study's ``identity_start`` model under ``recipe`` started at the identity
    (``nf.experiments.mnist_study.start_check_config``; None while untrained), compared with the study's randomly
    started run of that model and recipe in ``study_runs``."""
    model = study.get("identity_start")
    if model is None:
        return "The recipe study trains no model with the identity start."
    label = model_label(tuple(model))
    random = study_runs[recipe][study["models"].index(model)]
    if check is None or random is None:
        missing = "the identity-started run" if check is None else "the randomly started run"
        return (
            f"*Would the identity start be chosen?* **Not tested**: {missing} of {label} ({recipe}) is not trained yet."
        )
    d, u = separately_trained(random, check, noise)
    if d < 0 and margin(d, 0.0, u) > SIGNIFICANT:
        called = (
            "**would be chosen**: the ladder of Table 2, trained with the random start, is not the recipe this rule "
            "now picks, and its verdicts hold for the random start only"
        )
    else:
        called = f"**would not be chosen** (not lower by more than {SIGNIFICANT:g} $u$): Table 2's random start stays"
    return (
        f"*Would the identity start be chosen?* On the validation split, {label} under *{recipe}* started at the "
        f"identity minus started at random: {d:+.2f} ± {u:.2f} nats in $-\\ln p(x)$; the identity start {called}."
    )
