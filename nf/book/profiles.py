"""Named parameter profiles for the chapters' papermill ``parameters`` cells.

* ``ci``: seconds per chapter, to smoke-test that every chapter runs;
* ``report``: what the published book shows; fits a 2-core CPU;
* ``paper``: the paper's own settings (RMSprop, learning rate 1e-5,
  momentum 0.9, 500,000 updates); meant for a GPU.

The MNIST chapter's parameters are a recipe ``study`` (validation split) and
a report ``ladder`` (test set) trained with the recipe the study chooses
(``nf.experiments.mnist_study``). The NICE and convolutional-flow chapters show
that ladder's runs of their flows (``mnist_profile``: the profile whose MNIST
chapter they read); their ``mnist`` parameter trains short smoke runs of the
same flows under the ``quick`` protocol of the book's first version
(``MNIST_QUICK``), which no table shows.

A chapter's parameters are the common ones (seed, device) updated with that
chapter's entry in the profile.
"""

from __future__ import annotations

import copy
from typing import Any

from nf.experiments.mnist import DEFAULT_MNIST_CONFIG
from nf.experiments.toy import DEFAULT_TOY_CONFIG

PROFILE_NAMES = ("ci", "report", "paper")

COMMON: dict[str, Any] = {"seed": 0, "device": "cpu"}

THEORY: dict[str, Any] = {"grid_cells": 400}  # density plots: grid points per axis

# The settings of one run that a chapter's parameters carry; those a profile does not state come from the
# experiment's defaults (``DEFAULT_TOY_CONFIG``, ``DEFAULT_MNIST_CONFIG``), the one place they are written.
TOY_TRAINING_KEYS = ("updates", "anneal_updates", "batch_size", "optimizer", "learning_rate", "eval_samples")
MNIST_TRAINING_KEYS = (
    "updates",
    "anneal_updates",
    "batch_size",
    "optimizer",
    "learning_rate",
    "clip_grad_norm",
    "eval_every",
    "eval_samples",
    "test_seed",
)


def _defaults(defaults: dict[str, Any], keys: tuple[str, ...], **changes: Any) -> dict[str, Any]:
    """The default values of ``keys``, with ``changes``."""
    return {**{k: defaults[k] for k in keys}, **changes}


TOY_REPORT: dict[str, Any] = {
    "energies": ["U1", "U2", "U3", "U4"],
    "families": ["planar", "radial", "nice-orth", "nice-perm"],
    "flow_lengths": [2, 8, 32],
    "seeds": [0, 1, 2],
    **_defaults(DEFAULT_TOY_CONFIG, TOY_TRAINING_KEYS, updates=4000, learning_rate=5e-3),
    "workers": 2,
}

# The short runs of the book's first version (protocol ``quick``: 10,000 updates, monitored on test images); the
# NICE and convolutional-flow chapters train them as a smoke test of their flows on MNIST and show none of them: their
# tables and figures are the MNIST chapter's report ladder (``mnist_profile``).
MNIST_QUICK: dict[str, Any] = {
    "models": [
        ["none", 0],
        ["planar", 10],
        ["planar", 20],
        ["planar", 40],
        ["planar", 80],
        ["radial", 10],
        ["radial", 20],
    ],
    **_defaults(
        DEFAULT_MNIST_CONFIG,
        MNIST_TRAINING_KEYS,
        updates=10_000,
        anneal_updates=5_000,
        learning_rate=5e-4,
        eval_every=500,
    ),
}

PAPER_RECIPE = "paper's RMSprop"  # the study's recipe with the paper's optimiser

MNIST_STUDY: dict[str, Any] = {
    "models": [["none", 0], ["planar", 20]],
    "common": {
        "protocol": "validation",
        "anneal_updates": 10_000,
        "batch_size": 100,
        "eval_every": 2500,
        "eval_samples": 200,
        "test_seed": 0,
    },
    "recipes": {
        PAPER_RECIPE: {
            "optimizer": "rmsprop",
            "learning_rate": 1e-5,
            "momentum": 0.9,
            "clip_grad_norm": 0.0,
            "updates": 100_000,
        },
        "Adam": {
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "final_learning_rate": 1e-4,
            "clip_grad_norm": 100.0,
            "updates": 60_000,
        },
        "Adam, flow step x0.1": {
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "final_learning_rate": 1e-4,
            "clip_grad_norm": 100.0,
            "flow_lr_scale": 0.1,
            "updates": 60_000,
        },
    },
    "budgets": {"recipe": "Adam", "updates": [20_000, 100_000]},
    "candidates": ["Adam", "Adam, flow step x0.1"],
    "identity_start": ["planar", 20],  # trained again with the identity start under the chosen recipe
}

MNIST_LADDER: dict[str, Any] = {  # Table 2's rows (planar, NICE-perm), the NICE scaling/mixing comparison at K=20,
    "models": [  # then the radial and convolutional flows (not in the paper's Table 2)
        ["none", 0],
        *[["planar", k] for k in (10, 20, 40, 80)],
        *[["nice-perm", k] for k in (10, 20, 40, 80)],
        *[[f, 20] for f in ("nice-perm+scale", "nice-orth", "nice-orth+scale")],
        *[["radial", k] for k in (10, 20)],
        *[["conv", k] for k in (5, 10, 20)],
    ],
    "seeded": [["none", 0], *[["planar", k] for k in (10, 20)], *[[f, 20] for f in ("nice-perm", "nice-perm+scale")]],
    "seeds": [0, 1, 2],
    "identity_start": [*[["conv", k] for k in (5, 10, 20)], *[["planar", k] for k in (20, 80)]],
    "common": {
        "protocol": "test",
        "updates": 100_000,
        "anneal_updates": 10_000,
        "batch_size": 100,
        "eval_every": 2500,
        "eval_samples": 200,
        "test_seed": 0,
    },
}

# Table 2 in the paper's own regime: the study's paper recipe (RMSprop 1e-5, momentum 0.9) for the paper's 500,000
# updates on the test protocol; each run stores its budget points on its way.  Hours per run on a CPU core (the
# compute appendix measures them): trained as jobs (``python -m nf runs train mnist``), never inside the chapter,
# which shows what is cached.
# Its own spread over training seeds: the diagonal model and planar K=20 again with seeds 1 and 2, to the first
# budget point (seed 0's is the regime run's own).
MNIST_PAPER_REGIME: dict[str, Any] = {
    "models": [["none", 0], *[["planar", k] for k in (10, 20, 40, 80)], ["nice-perm", 80]],
    "seeded": [["none", 0], ["planar", 20]],
    "seeds": [0, 1, 2],
    "seeds_at": 100_000,
    "common": {**MNIST_LADDER["common"], "updates": 500_000},
}

MNIST_REPORT: dict[str, Any] = {
    "study": MNIST_STUDY,
    "ladder": MNIST_LADDER,
    "paper_regime": MNIST_PAPER_REGIME,
    "train": True,
    "workers": 2,
}

NICE_FAMILIES = ["nice-perm", "nice-perm+scale", "nice-orth", "nice-orth+scale"]

NICE_REPORT: dict[str, Any] = {
    "toy": {**TOY_REPORT, "families": ["planar", *NICE_FAMILIES]},
    "mnist_profile": "report",  # the MNIST chapter's profile whose report ladder the chapter shows
    "mnist": {
        **MNIST_QUICK,
        "models": [
            ["none", 0],
            *[["planar", k] for k in (10, 20, 40, 80)],
            *[["nice-perm", k] for k in (10, 20, 40, 80)],
            *[["nice-perm+scale", k] for k in (10, 20, 40, 80)],
            ["nice-orth", 20],
            ["nice-orth+scale", 20],
        ],
        "workers": 2,
    },
}

CONV_REPORT: dict[str, Any] = {
    "toy": {**TOY_REPORT, "families": ["planar", "nice-perm+scale", "conv"], "seeds": [0, 1]},
    "mnist_profile": "report",  # the MNIST chapter's profile whose report ladder the chapter shows
    "mnist": {
        **MNIST_QUICK,
        "models": [
            ["none", 0],
            *[[flow, k] for flow in ("planar", "nice-perm+scale") for k in (10, 20, 40)],
            *[["conv", k] for k in (5, 10, 20)],
        ],
        "workers": 2,
    },
}

# Where the gap goes (``nf.experiments.gaps``): analyses of trained MNIST models, each a job of its own
# (``python -m nf runs train gaps``) once its run is cached; the chapter only reads them (``train``: False).
GAPS_REPORT: dict[str, Any] = {
    "mnist_profile": "report",  # the MNIST chapter's profile whose runs are analysed
    "report_models": [["none", 0], ["planar", 20], ["planar", 80], ["nice-perm", 80]],  # the report ladder, seed 0
    "regime_models": [["none", 0], ["planar", 20], ["planar", 80]],  # the paper's regime, at its full budget
    "images": 1000,  # the first test images, the same for every model
    "nll_samples": 5000,  # importance samples for -ln p(x)
    "decoder_flow": 40,  # planar layers fitted per image to each model's decoder
    "fit": {},  # nf.models.local_bound.LocalFit settings that differ from its defaults
    # the convergence check: each analysis repeated on its first images with the next, longer fit; an analysis
    # whose check says no is made again with that fit and checked with the one after (nf.report.gaps)
    "check": {
        "images": 100,
        "fits": [
            {"rate_cuts": 4, "max_steps": 20000},
            {"rate_cuts": 4, "check_every": 400, "max_steps": 40000},
            {"rate_cuts": 4, "check_every": 1600, "max_steps": 160000},  # rule 9: added after the others' checks
        ],
    },
    "train": False,
}

_CI_TOY = {
    "energies": ["U1"],
    "flow_lengths": [2],
    "seeds": [0],
    "updates": 200,
    "anneal_updates": 100,
    "batch_size": 64,
    "eval_samples": 2000,
    "workers": 1,
}
_CI_MNIST = {"updates": 60, "anneal_updates": 20, "eval_every": 30, "eval_samples": 10}


def _small(report: dict[str, Any], toy_families: list[str], mnist_models: list[list]) -> dict[str, Any]:
    """The ``ci`` version of a chapter with a toy and an MNIST part (which reads the MNIST chapter's ``ci`` ladder)."""
    return {
        "toy": {**report["toy"], **_CI_TOY, "families": toy_families},
        "mnist_profile": "ci",
        "mnist": {**report["mnist"], **_CI_MNIST, "models": mnist_models, "workers": 1},
    }


_CI_STUDY_COMMON = {**MNIST_STUDY["common"], "anneal_updates": 20, "eval_every": 30, "eval_samples": 10}

PAPER_TOY: dict[str, Any] = {
    **TOY_REPORT,
    "updates": 500_000,
    "anneal_updates": 10_000,
    "batch_size": 100,  # not stated in the paper for the toy experiments
    "optimizer": "rmsprop",
    "learning_rate": 1e-5,
    "eval_samples": 100_000,
}
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "ci": {
        "theory": THEORY,
        "toy": {**TOY_REPORT, **_CI_TOY, "energies": ["U1", "U3"], "families": ["planar", "nice-orth"]},
        "mnist": {
            "study": {
                **MNIST_STUDY,
                "common": _CI_STUDY_COMMON,
                "recipes": {name: {**r, "updates": 60} for name, r in MNIST_STUDY["recipes"].items()},
                "budgets": {"recipe": "Adam", "updates": [40]},
            },
            "ladder": {
                "models": [["none", 0], ["planar", 2]],
                "seeded": [["none", 0], ["planar", 2]],
                "seeds": [0, 1],
                "identity_start": [["planar", 2]],
                "common": {
                    **MNIST_LADDER["common"],
                    "updates": 60,
                    "anneal_updates": 20,
                    "eval_every": 30,
                    "eval_samples": 10,
                },
            },
            "paper_regime": {
                "models": [["none", 0], ["planar", 2]],
                "seeded": [["none", 0], ["planar", 2]],
                "seeds": [0, 1],
                "seeds_at": _CI_MNIST["updates"],
                "common": {**MNIST_PAPER_REGIME["common"], **_CI_MNIST},
            },
            "train": True,
            "workers": 1,
        },
        "nice": _small(
            NICE_REPORT,
            ["planar", "nice-perm", "nice-perm+scale"],
            [["none", 0], ["planar", 2], ["nice-perm", 2], ["nice-perm+scale", 2]],
        ),
        "conv": _small(CONV_REPORT, ["planar", "conv"], [["none", 0], ["planar", 2], ["conv", 2]]),
        "gaps": {
            **GAPS_REPORT,
            "mnist_profile": "ci",
            "report_models": [["none", 0], ["planar", 2]],
            "regime_models": [["none", 0], ["planar", 2]],
            "images": 20,
            "nll_samples": 50,
            "decoder_flow": 2,
            "fit": {"samples": 2, "check_every": 5, "check_samples": 20, "max_steps": 20, "final_samples": 20},
            "check": {
                "images": 5,
                "fits": [{"rate_cuts": 3, "max_steps": 40}, {"rate_cuts": 3, "check_every": 20, "max_steps": 160}],
            },
            "train": True,
        },
    },
    "report": {
        "theory": THEORY,
        "toy": TOY_REPORT,
        "mnist": MNIST_REPORT,
        "nice": NICE_REPORT,
        "conv": CONV_REPORT,
        "gaps": GAPS_REPORT,
    },
    "paper": {
        "theory": THEORY,
        "toy": PAPER_TOY,
        "mnist": {
            "study": {
                **MNIST_STUDY,
                "recipes": {PAPER_RECIPE: {**MNIST_STUDY["recipes"][PAPER_RECIPE], "updates": 500_000}},
                "budgets": {"recipe": PAPER_RECIPE, "updates": []},
                "candidates": [PAPER_RECIPE],
            },
            "ladder": {
                **MNIST_LADDER,
                "models": [*MNIST_LADDER["models"], *[["radial", k] for k in (40, 80)]],
                "common": {**MNIST_LADDER["common"], "updates": 500_000},
            },
            "paper_regime": MNIST_PAPER_REGIME,
            "train": True,
            "workers": 1,
        },
        "nice": {
            "toy": {**PAPER_TOY, "families": NICE_REPORT["toy"]["families"]},
            "mnist_profile": "paper",
            "mnist": NICE_REPORT["mnist"],  # the smoke runs; the chapter's tables read the paper ladder
        },
        "conv": {
            "toy": {**PAPER_TOY, "families": CONV_REPORT["toy"]["families"]},
            "mnist_profile": "paper",
            "mnist": CONV_REPORT["mnist"],  # the smoke runs; the chapter's tables read the paper ladder
        },
        "gaps": {**GAPS_REPORT, "mnist_profile": "paper"},
    },
}


def chapter_parameters(chapter: str, profile: str = "report", device: str | None = None) -> dict[str, Any]:
    """The papermill parameters of ``chapter`` under ``profile`` (``device`` overrides the profile's)."""
    from nf.book.chapters import get_chapter

    get_chapter(chapter)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILE_NAMES)}")
    parameters = copy.deepcopy({**COMMON, **PROFILES[profile].get(chapter, {})})
    if device is not None:
        parameters["device"] = device
    return parameters
