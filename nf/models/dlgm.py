"""The deep latent Gaussian model of the paper's MNIST experiments (section 6.2).

Generative model: ``z ~ N(0, I_40)``, ``x | z ~ Bernoulli(sigmoid(g(z)))`` with
``g`` a network with one deterministic hidden layer of 400 maxout units
(pool size 4).  Inference network: ``x`` -> 400 maxout units -> the mean and
log standard deviation of ``q_0(z_0 | x)`` and, per data point, the
parameters of all ``K`` flow layers (amortised flows).  The posterior
approximation is ``q_K(z_K | x)``: ``q_0`` pushed through the flow.

Objective: the free energy of eq. 20 with annealing,

    F_beta(x) = E_{q_0}[ ln q_0(z_0) - beta_t ln p(x, z_K) - sum_k ln|det df_k/dz_{k-1}| ],

which at ``beta = 1`` is the negative ELBO, an upper bound on ``-ln p(x)``.

Flows (``DLGM_FLOWS``): ``planar`` and ``radial`` take all their parameters
from the inference network.  NICE couplings (``nice-perm``, ``nice-orth``,
optionally ``+scale``) and the convolutional flow (``conv``) own their
coupling networks; each coupling network is conditioned on ``x`` through
``COUPLING_CONTEXT`` numbers that the inference network emits for that layer
(the network sees ``[z_A, c_k(x)]``), and NICE's final scaling and the
circular convolutions' spectra are emitted per image.  Without such
conditioning a volume-preserving flow would apply the same map to every
image's posterior.  The coupling networks have ``COUPLING_HIDDEN`` units,
the same for every ``K``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nf.flows import ConvChain, CouplingChain, FlowLayer, PlanarChain, RadialChain, make_flow
from nf.flows.conv_coupling import INITIAL_ALPHA
from nf.models.distributions import DiagonalGaussian
from nf.models.flow_start import FLOW_STARTS, IDENTITY_GATE_ALPHA, check_flow_start, start_at_identity
from nf.validation import check_choice, check_int

DLGM_FLOWS = ("none", "planar", "radial", "nice-perm", "nice-orth", "nice-perm+scale", "nice-orth+scale", "conv")
COUPLING_HIDDEN = (64, 64)
COUPLING_CONTEXT = 16


class Maxout(nn.Module):
    """``out`` maxout units: the maximum over groups of ``pool`` linear units."""

    def __init__(self, in_features: int, out_features: int, pool: int = 4):
        super().__init__()
        self.out_features, self.pool = out_features, pool
        self.linear = nn.Linear(in_features, out_features * pool)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        return y.view(*y.shape[:-1], self.out_features, self.pool).amax(-1)


LAYER_CHAINS: dict[str, type[FlowLayer]] = {"planar": PlanarChain, "radial": RadialChain}  # built fused directly


def fused_chain(family: str, dim: int) -> type[FlowLayer] | None:
    """The class that runs a layer-by-layer ``family`` flow on ``R^dim`` in fewer operations, if there is one:
    ``CouplingChain`` for NICE and ``ConvChain`` for the convolutional flow, both on an even ``dim`` (equal coupling
    halves; planar and radial chains are built fused from the start, ``PlanarChain`` and ``RadialChain``)."""
    if dim % 2:
        return None
    return {"nice": CouplingChain, "conv": ConvChain}.get(family.split("-")[0])


def amortized_flow(
    family: str, dim: int, length: int, fused: bool = True, gate_alpha: float = INITIAL_ALPHA
) -> FlowLayer | None:
    """The amortised posterior flow of a DLGM (module docstring): None for ``length = 0``; by default planar and
    radial chains fused (``PlanarChain``, ``RadialChain``) and the NICE and convolutional flows run by their
    ``fused_chain``: the same maths in fewer operations.  ``gate_alpha``: the convolutional flow's initial
    ``LogGate`` ``alpha``."""
    check_choice("DLGM flow", family, DLGM_FLOWS)
    check_int("flow length", length, minimum=0)
    if family == "none" or length == 0:
        return None
    if fused and family in LAYER_CHAINS:
        return LAYER_CHAINS[family](dim, length, amortized=True)
    flow = make_flow(
        family,
        dim,
        length,
        amortized=True,
        coupling_hidden=COUPLING_HIDDEN,
        context=COUPLING_CONTEXT,
        gate_alpha=gate_alpha,
    )
    chain = fused_chain(family, dim) if fused else None
    return chain(flow) if chain is not None else flow


class DLGM(nn.Module):
    """Deep latent Gaussian model with an amortised normalizing-flow posterior.

    Args:
        flow: one of ``DLGM_FLOWS`` (``none``: the diagonal-Gaussian posterior).
        length: number of flow layers ``K`` (0: the diagonal-Gaussian posterior).
        latent, hidden, pool, data_dim: sizes (paper: 40, 400, 4, 784).
        fused: use the fused planar, radial and convolutional chains and the folded NICE chain (same numbers up to
            rounding, faster); the NICE and convolutional chains need an even ``latent`` (else layer by layer).
        flow_start: ``random`` (the inference network's flow outputs start like any linear layer's) or ``identity``
            (every flow layer starts as the identity map; ``nf.models.flow_start``).
    """

    def __init__(
        self,
        flow: str = "planar",
        length: int = 10,
        latent: int = 40,
        hidden: int = 400,
        pool: int = 4,
        data_dim: int = 784,
        fused: bool = True,
        flow_start: str = "random",
    ):
        super().__init__()
        identity = flow_start == "identity" and flow != "none" and length > 0
        if identity:
            check_flow_start(flow, flow_start)
        else:
            check_choice("flow start", flow_start, FLOW_STARTS)
        self.latent = latent
        self.flow = amortized_flow(flow, latent, length, fused, IDENTITY_GATE_ALPHA if identity else INITIAL_ALPHA)
        n_flow = 0 if self.flow is None else self.flow.n_params
        self.encoder = Maxout(data_dim, hidden, pool)
        head = nn.Linear(hidden, 2 * latent + n_flow)  # one draw of initial weights, whatever the split
        self.posterior_head = _rows(head, 0, 2 * latent)
        self.flow_head = None if self.flow is None else _rows(head, 2 * latent, 2 * latent + n_flow)
        self.decoder = nn.Sequential(Maxout(latent, hidden, pool), nn.Linear(hidden, data_dim))
        if identity:
            start_at_identity(self.flow_head, flow, latent, length)

    def flow_parameters(self) -> list[nn.Parameter]:
        """The parameters that shape the flow: the head emitting its per-image parameters and the flow's own."""
        if self.flow is None:
            return []
        return [*self.flow_head.parameters(), *self.flow.parameters()]

    def posterior(self, x: Tensor) -> tuple[DiagonalGaussian, Tensor | None]:
        """``q_0(z_0 | x)`` and the per-sample flow parameters."""
        hidden = self.encoder(x)
        out = self.posterior_head(hidden)
        loc, log_scale = out[..., : self.latent], out[..., self.latent :]
        params = self.flow_head(hidden) if self.flow is not None else None
        return DiagonalGaussian(loc, log_scale), params

    def sample_posterior(self, x: Tensor, samples: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(z_0, z_K, ln q_K(z_K | x))``; with ``samples``, a leading sample dimension."""
        q0, params = self.posterior(x)
        z0 = q0.rsample(() if samples is None else (samples,))
        return (z0, *push_forward(q0, self.flow, params, z0))

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """``ln p(x, z) = ln p(x | z) + ln N(z; 0, I)``; the decoder is fed ``z_K``."""
        logits = self.decoder(z)
        log_likelihood = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        log_prior = -0.5 * (z * z).sum(-1) - 0.5 * self.latent * math.log(2 * math.pi)
        return log_likelihood + log_prior

    def free_energy(self, x: Tensor, beta: float = 1.0) -> Tensor:
        """Per-image single-sample estimate of ``F_beta(x)`` (eq. 20)."""
        _, zk, log_q = self.sample_posterior(x)
        return log_q - beta * self.log_joint(x, zk)

    def log_importance_weights(self, x: Tensor, samples: int) -> Tensor:
        """``ln w_s = ln p(x, z_s) - ln q_K(z_s | x)`` for ``S = samples`` draws ``z_s ~ q_K``; shape ``(S, batch)``.

        ``-mean_s ln w_s`` estimates the bound ``F(x)`` and
        ``ln (1/S) sum_s w_s`` the log-likelihood ``ln p(x)`` (the paper's estimator).
        """
        _, zk, log_q = self.sample_posterior(x, samples)
        return self.log_joint(x, zk) - log_q

    @torch.no_grad()
    def importance_log_likelihood(self, x: Tensor, samples: int = 200) -> Tensor:
        """Per-image ``ln p(x) ~ ln (1/S) sum_s p(x, z_s) / q_K(z_s | x)``, ``z_s ~ q_K`` (the paper's estimator)."""
        return log_mean_exp(self.log_importance_weights(x, samples))


def push_forward(
    q0: DiagonalGaussian, flow: FlowLayer | None, params: Tensor | None, z0: Tensor
) -> tuple[Tensor, Tensor]:
    """``(z_K, ln q_K(z_K))`` for draws ``z_0`` of ``q_0`` pushed through ``flow`` with per-image ``params`` (eq. 7):
    ``ln q_K(z_K) = ln q_0(z_0) - sum_k ln|det df_k/dz_{k-1}|``; without a flow, ``(z_0, ln q_0(z_0))``."""
    if flow is None:
        return z0, q0.log_prob(z0)
    zk, log_det = flow(z0, params)
    return zk, q0.log_prob(z0) - log_det


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """``ln (1/S) sum_s exp(ln w_s)`` over dimension ``dim`` (the leading one by default): the importance estimate
    of ``ln p(x)`` from ``S`` log-weights (``DLGM.log_importance_weights``), biased low for finite ``S`` by Jensen's
    inequality."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def _rows(linear: nn.Linear, start: int, stop: int) -> nn.Linear:
    """A linear layer computing outputs ``start:stop`` of ``linear``, with copies of its weights."""
    part = torch.nn.utils.skip_init(nn.Linear, linear.in_features, stop - start)  # draws no random numbers
    with torch.no_grad():
        part.weight.copy_(linear.weight[start:stop])
        part.bias.copy_(linear.bias[start:stop])
    return part
