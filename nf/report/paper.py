"""Numbers reported by Rezende & Mohamed (2015), quoted for comparison.

These are the paper's values, not results of this repository; the book
always shows them beside our own numbers and labels them as the paper's.
"""

from __future__ import annotations

# Table 2: -ln p(x) on binarised MNIST (upper bounds, nats).
TABLE2_NEG_LOG_LIKELIHOOD: dict[str, float] = {
    "DLGM diagonal covariance": 89.9,
    "DLGM+NF (k = 10)": 87.5,
    "DLGM+NF (k = 20)": 86.5,
    "DLGM+NF (k = 40)": 85.7,
    "DLGM+NF (k = 80)": 85.1,
    "DLGM+NICE (k = 10)": 88.6,
    "DLGM+NICE (k = 20)": 87.9,
    "DLGM+NICE (k = 40)": 87.3,
    "DLGM+NICE (k = 80)": 87.2,
}

# The training settings the paper states (section 6): RMSprop with momentum, 500,000 updates, and the
# inverse temperature beta_t = min(1, 0.01 + t / 10,000).
PAPER_TRAINING: dict[str, float | int | str] = {
    "optimizer": "rmsprop",
    "learning_rate": 1e-5,
    "momentum": 0.9,
    "updates": 500_000,
    "anneal_updates": 10_000,
}
