"""The numerical checks the chapters display can fail: a wrong log-det or a wrong inverse is reported."""

from __future__ import annotations

import torch

from nf.flows import DiagonalScaling, OrthogonalMixing
from nf.report.flows import check_table


class WrongLogDet(DiagonalScaling):
    """A scaling that reports ``abs(sum(s))``: the classic mistake."""

    def forward(self, z, params=None):
        y, log_det = super().forward(z, params)
        return y, log_det.abs()


class WrongInverse(DiagonalScaling):
    def inverse(self, y, params=None):
        return y


def test_check_table_reports_wrong_layers_and_passes_right_ones():
    rows = check_table(
        {
            "right": lambda: DiagonalScaling(5),
            "orthogonal": lambda: OrthogonalMixing(5),
            "wrong log-det": lambda: WrongLogDet(5),
            "wrong inverse": lambda: WrongInverse(5),
        },
        dim=5,
    )
    verdicts = {r["layer"]: (r["log-det error < 1e-09"], r["inverse error < 1e-09"]) for r in rows}
    assert verdicts == {
        "right": ("True", "True"),
        "orthogonal": ("True", "True"),
        "wrong log-det": ("False", "True"),
        "wrong inverse": ("True", "False"),
    }
    assert torch.get_default_dtype() == torch.float64  # the conftest default, restored after the check
