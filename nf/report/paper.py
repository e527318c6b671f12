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
