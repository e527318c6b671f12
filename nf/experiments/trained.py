"""Trained MNIST models: the parameters a run stored, or those of its retraining, checked against the run.

Runs of at least ``nf.experiments.mnist.KEEP_PARAMETERS_FROM`` updates store their trained parameters
(``parameters.pt``) with their scores.  Shorter runs did not, and their cache entries are never rewritten;
``retrain_parameters`` trains the same config again, with its parameters kept, and stores them as an entry of
their own (experiment ``parameters``, keyed by the run's key), beside the retrained run's scores and their
differences from the cached run's: a retrained run reproduces its cached numbers only if training is deterministic
on the machine that retrains it (the same code, one thread), which that entry shows rather than assumes.
``trained_model`` finds either.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nf.experiments import mnist
from nf.experiments.comparisons import scored_on
from nf.models.dlgm import DLGM
from nf.runs.cache import Run, cached_run, lookup

COMPARED = ("nll", "bound", "kl")  # the numbers a retrained run is checked on, on the images it is scored on


def parameters_entry(run: Run, results_dir: str | Path | None = None) -> Run | None:
    """The ``parameters`` entry of ``run`` made by ``retrain_parameters``, if there is one."""
    return lookup("parameters", {"run": run.key}, results_dir)


def trained_model(run: Run, results_dir: str | Path | None = None) -> DLGM:
    """The trained DLGM of ``run``: its own ``parameters.pt``, else its retrained parameters (``parameters_entry``
    in ``results_dir``)."""
    source = run if (run.path / "parameters.pt").exists() else parameters_entry(run, results_dir)
    if source is None:
        raise ValueError(
            f"the run {run.key} ({run.config['flow']} K={run.config['length']}, {run.config['updates']:,} updates) "
            f"has no stored parameters: only runs of at least {mnist.KEEP_PARAMETERS_FROM:,} updates keep them; "
            "retrain_parameters makes them"
        )
    model = DLGM(run.config["flow"], run.config["length"], flow_start=mnist.full_config(run.config)["flow_start"])
    model.load_state_dict(source.load_tensors("parameters.pt"))
    return model.eval()


def retrain_parameters(
    run: Run, results_dir: str | Path | None = None, device: str = "cpu", data_root: str | None = None
) -> Run:
    """The ``parameters`` entry of ``run``: its config trained again with the parameters kept, made if missing.
    Its ``metrics.json`` holds the retrained run's ``COMPARED`` numbers, the cached run's, and their differences."""

    def write(config: dict[str, Any], folder: Path, checkpoint: Path) -> None:
        with tempfile.TemporaryDirectory() as work:
            mnist.train_mnist(
                run.config, Path(work), checkpoint, device, data_root, results_dir=work, keep_parameters=True
            )
            retrained = json.loads((Path(work) / "metrics.json").read_text())
            shutil.copy(Path(work) / "parameters.pt", folder / "parameters.pt")
        keys = [f"{scored_on(run)}_{q}" for q in COMPARED]
        check = {
            "retrained": {k: retrained[k] for k in keys},
            "cached": {k: run.metrics[k] for k in keys},
            "difference": {k: retrained[k] - run.metrics[k] for k in keys},
        }
        (folder / "metrics.json").write_text(json.dumps(check, indent=1))

    return cached_run("parameters", {"run": run.key}, write, results_dir)
