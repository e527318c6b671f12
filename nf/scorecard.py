"""The reproduction scorecard: every number of the paper beside ours."""

from __future__ import annotations

from .paper import TABLE2_NEG_LOG_LIKELIHOOD

NOT_RUN = "not run yet"


def scorecard_rows() -> list[dict[str, str]]:
    """One row per number the paper reports, with ours where an experiment exists.

    The MNIST experiments are not implemented yet, so their "ours" column says
    so rather than showing a number.
    """
    return [
        {"experiment": "MNIST, Table 2", "model": model, "paper -ln p(x)": f"{value:.1f}", "ours": NOT_RUN}
        for model, value in TABLE2_NEG_LOG_LIKELIHOOD.items()
    ]

