"""The bound with each image's variational parameters optimised for that image alone (Cremer, Li & Duvenaud 2018).

A DLGM's inference network maps an image ``x`` to variational parameters ``lambda(x)``: the mean and log standard
deviation of ``q_0`` and the per-image flow parameters (planar and radial: all of them; NICE and conv: the coupling
contexts, NICE's scaling, the spectra; the coupling networks are global).  Its bound is
``F(x) = F(x; lambda(x))`` with

    F(x; lambda) = E_{q_0(z_0; lambda)} [ ln q_K(z_K; lambda) - ln p(x, z_K) ]  >=  -ln p(x).

Keeping the decoder and every global parameter fixed and optimising ``lambda`` for ``x`` alone gives the best bound
of the family, ``F*(x) = min_lambda F(x; lambda)``, and splits the inference gap in two (Cremer, Li & Duvenaud,
"Inference Suboptimality in Variational Autoencoders", ICML 2018):

    F(x) - (-ln p(x))  =  [ F*(x) - (-ln p(x)) ]  +  [ F(x) - F*(x) ]
       inference gap       approximation gap         amortisation gap

``locally_optimised_bound`` estimates ``F*(x)`` for a trained DLGM, starting from the encoder's ``lambda(x)``;
``local_planar_bound`` does so for a richer family than the model's own, ``q_0`` and a planar flow of any length
fitted per image to the fixed decoder (the decoder question: how much of a model's bound is its decoder's doing).
Both run ``optimise_local_bound``, which needs only ``ln p(x, z)`` and the family (a flow, or none, and the starting
parameters), so it is tested on a linear-Gaussian model whose posterior and ``ln p(x)`` are known exactly.

**Optimisation.**  Adam (Kingma & Ba 2015) on the per-image tensors, each step on ``samples`` fresh draws per
image, with a short memory for the squared gradients (``beta_2 = 0.95``): with the usual 0.999 the large gradients
far from the optimum keep the steps tiny for a thousand steps after it is near.  The loss is the sum over images of
their estimated bounds and Adam acts element by element, so no image's gradient or step depends on another's:
optimising a batch is optimising each image alone.

**Convergence rule, per image.**  Steps run in chunks of ``check_every``.  Before the first chunk,
``check_samples`` standard normal draws ``eps_1..eps_S`` are fixed (common random numbers).  After each chunk
``c`` the image's bound is estimated on them, ``F_c = -(1/S) sum_s ln w_s``, with standard error
``se_c = std_s(ln w_s) / sqrt(S)``.  The chunk *stalls* if it improved the bound by less than the bound's Monte
Carlo error,

    F_{c-1} - F_c  <  se_c.

At a stall the image's Adam starts afresh (moments forgotten) with its learning rate divided by ``RATE_CUT``; at the
stall that follows ``rate_cuts`` such cuts the image stops, its parameters frozen (``converged``), or it stops at
``max_steps`` (not converged).  Its ``F*(x)`` is then estimated on ``final_samples`` fresh draws, not the ones the
rule looked at, with its standard error; the starting parameters are scored on the same draws, so the gain
``F(x; lambda_start) - F*(x)`` (the amortisation gap, when starting from the encoder) has a paired standard error.
Images that have stopped leave the batch, so the computation shrinks as they converge; the draws of the images
still running are rows of full-batch draws, so an image's result does not depend on when the others stop.

**Resuming.**  After every step the fit hands ``at_step`` a function that returns a copy of its state
(``FitState``: the parameters, Adam's moments, each image's rate, step count, cuts and last checked bound, the
images still running, and the state of the steps' random draws); a fit given that state as ``resume`` continues
from that step to the same numbers as a fit that never stopped (the rule's draws are drawn again from ``seed``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nf.flows import FlowLayer, PlanarChain
from nf.flows.planar import identity_parameters as planar_identity
from nf.models.distributions import DiagonalGaussian
from nf.models.dlgm import DLGM, push_forward
from nf.validation import check_int, check_positive

LogJoint = Callable[[Tensor, Tensor], Tensor]  # (x of shape (B, ...), z of shape (S, B, D)) -> ln p(x, z), (S, B)
Variational = tuple[Tensor, Tensor, Tensor | None]  # per image: q_0's mean and log std (B, D), flow params (B, P)
FitState = dict[str, Any]  # a fit's state after a step (module docstring, "Resuming"): tensors and an int
AtStep = Callable[[Callable[[], FitState]], None]  # called after each step with a function returning its state

_EVALUATION_ROWS = 20_000  # draws times images per pass when only estimating (no gradients kept)
_ADAM_BETAS, _ADAM_EPS = (0.9, 0.95), 1e-8
RATE_CUT = 10.0  # an image's learning rate is divided by this when a chunk stalls (module docstring)


@dataclass(frozen=True)
class LocalFit:
    """How each image's parameters are optimised and when an image stops (module docstring).

    Args:
        learning_rate: Adam's step size.
        samples: Monte Carlo draws per image in each step.
        check_every: steps in a chunk, after which the convergence rule is checked.
        check_samples: the fixed draws per image on which the rule compares chunks.
        rate_cuts: how many times an image's learning rate is cut (by ``RATE_CUT``) at a stall before the next stall
            stops it.
        max_steps: steps after which an image stops, converged or not.
        final_samples: fresh draws per image on which ``F*(x)`` is estimated.
        seed: seeds every draw: the rule's and the final estimate's (``seed``), the steps' (``seed + 1``), a local
            planar flow's starting ``w`` (``seed + 2``), and the importance samples of ``-ln p(x)`` from the fitted
            posteriors in ``nf.experiments.gaps`` (``seed + 3``, ``seed + 4``).
    """

    learning_rate: float = 1e-2
    samples: int = 10
    check_every: int = 100
    check_samples: int = 500
    rate_cuts: int = 2
    max_steps: int = 5000
    final_samples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive("learning_rate", self.learning_rate)
        for key in ("samples", "check_every", "check_samples", "max_steps", "final_samples"):
            check_int(key, getattr(self, key))
        for key in ("rate_cuts", "seed"):
            check_int(key, getattr(self, key), minimum=0)


@dataclass
class LocalBound:
    """Per-image results of ``optimise_local_bound``: tensors of shape ``(B,)``, the estimates in float64.

    ``bound`` is ``F*(x)`` and ``bound_se`` its standard error; ``start_bound`` is the bound at the starting
    parameters on the same draws and ``start_bound_se`` its standard error; ``gain_se`` is the standard error of
    ``start_bound - bound`` (paired); ``steps`` counts each image's Adam steps and ``converged`` says whether the
    rule stopped it.  ``parameters`` are the optimised ``(loc, log_scale, flow params)`` of the family ``flow``
    (``fitted_log_weights`` draws from them).
    """

    bound: Tensor
    bound_se: Tensor
    start_bound: Tensor
    start_bound_se: Tensor
    gain_se: Tensor
    steps: Tensor
    converged: Tensor
    parameters: Variational
    flow: FlowLayer | None


def optimise_local_bound(
    log_joint: LogJoint,
    flow: FlowLayer | None,
    images: Tensor,
    start: Variational,
    fit: LocalFit | None = None,
    resume: FitState | None = None,
    at_step: AtStep | None = None,
) -> LocalBound:
    """``F*(x)`` for each image: the bound with ``q_0``'s mean and log standard deviation and the flow's per-image
    parameters optimised for that image from ``start``, under the convergence rule of the module docstring.

    Args:
        log_joint: ``ln p(x, z)`` of the fixed model, for ``z`` of shape ``(S, B, D)``; shape ``(S, B)``.
        flow: the posterior flow, taking per-image parameters; its own (global) parameters stay as they are.
        images: the ``B`` images, batch first.
        start: the starting ``(loc, log_scale, flow params)``, each ``(B, ...)``; flow params None without a flow.
        fit: the optimiser's settings and the rule's (default ``LocalFit()``).
        resume: a state ``at_step`` was given by a fit of the same images, start and settings: continue from it.
        at_step: called after every step with a function returning (a copy of) the fit's state there.
    """
    fit = LocalFit() if fit is None else fit
    start = tuple(None if t is None else t.detach() for t in start)
    _check_start(images, flow, start)
    loc = start[0]
    batch, dim = loc.shape
    draws = torch.Generator(device=loc.device).manual_seed(fit.seed)
    steps_draws = torch.Generator(device=loc.device).manual_seed(fit.seed + 1)

    def normal(samples: int, generator: torch.Generator) -> Tensor:
        return torch.randn(samples, batch, dim, dtype=loc.dtype, device=loc.device, generator=generator)

    check_eps, final_eps = normal(fit.check_samples, draws), normal(fit.final_samples, draws)
    adam = _RowAdam([t for t in start if t is not None], fit.learning_rate)
    cuts = torch.zeros(batch, dtype=torch.long, device=loc.device)
    steps = torch.zeros(batch, dtype=torch.long, device=loc.device)
    converged = torch.zeros(batch, dtype=torch.bool, device=loc.device)
    active = torch.arange(batch, device=loc.device)
    step = 0
    if resume is None:
        previous = _bound_and_se(_log_weights(log_joint, flow, images, adam.parameters, check_eps))[0]
    else:
        step, previous, active = _resumed(resume, adam, cuts, steps, converged, steps_draws)

    def state() -> FitState:  # copies: the fit goes on changing its own tensors
        return {
            "step": step,
            **adam.state(),
            "cuts": cuts.clone(),
            "steps": steps.clone(),
            "converged": converged.clone(),
            "previous": previous.clone(),
            "active": active.clone(),
            "draws": steps_draws.get_state(),
        }

    while len(active) and step < fit.max_steps:
        step += 1
        eps = normal(fit.samples, steps_draws)[:, active]
        leaves = [t[active].requires_grad_() for t in adam.parameters]
        loss = -_log_weights_with_grad(log_joint, flow, images[active], leaves, eps).mean(0).sum()
        adam.step(active, torch.autograd.grad(loss, leaves))
        if step % fit.check_every == 0 or step == fit.max_steps:  # the end of a chunk: the rule
            steps[active] = step
            running = [t[active] for t in adam.parameters]
            now, se = _bound_and_se(_log_weights(log_joint, flow, images[active], running, check_eps[:, active]))
            if not torch.isfinite(now).all():
                bad = active[~torch.isfinite(now)].tolist()
                raise FloatingPointError(f"the local bound of image(s) {bad} is not finite after {step} steps")
            stalled = previous[active] - now < se
            previous[active] = now
            done = stalled & (cuts[active] == fit.rate_cuts)
            cut = active[stalled & ~done]
            adam.restart(cut, 1.0 / RATE_CUT)
            cuts[cut] += 1
            converged[active[done]] = True
            active = active[~done]
        if at_step is not None:
            at_step(state)
    optimised = _log_weights(log_joint, flow, images, adam.parameters, final_eps)
    started = _log_weights(log_joint, flow, images, [t for t in start if t is not None], final_eps)
    bound, bound_se = _bound_and_se(optimised)
    start_bound, start_bound_se = _bound_and_se(started)
    parameters = (*adam.parameters[:2], adam.parameters[2] if flow is not None else None)
    return LocalBound(
        bound=bound,
        bound_se=bound_se,
        start_bound=start_bound,
        start_bound_se=start_bound_se,
        gain_se=(optimised - started).std(0) / math.sqrt(fit.final_samples),
        steps=steps,
        converged=converged,
        parameters=parameters,
        flow=flow,
    )


def locally_optimised_bound(
    model: DLGM,
    images: Tensor,
    fit: LocalFit | None = None,
    resume: FitState | None = None,
    at_step: AtStep | None = None,
) -> LocalBound:
    """``F*(x)`` of a trained DLGM (module docstring): every per-image parameter its inference network emits,
    ``q_0``'s mean and log standard deviation and the flow's per-image parameters, optimised for each image from the
    encoder's output, with the decoder and the flow's global networks fixed.  ``start_bound`` is then the amortised
    bound ``F(x)`` on the same draws, and ``start_bound - bound`` the amortisation gap."""
    with torch.no_grad():
        q0, params = model.posterior(images)
    with _frozen(model):
        start = (q0.loc, q0.log_scale, params)
        return optimise_local_bound(model.log_joint, model.flow, images, start, fit, resume, at_step)


def local_planar_bound(
    model: DLGM,
    images: Tensor,
    length: int,
    fit: LocalFit | None = None,
    resume: FitState | None = None,
    at_step: AtStep | None = None,
) -> LocalBound:
    """The bound of ``q_0`` followed by a planar flow of ``length`` layers, all its parameters fitted per image to
    the fixed decoder of ``model`` (the model's own inference network and flow are not used beyond the start):
    ``q_0`` starts at the encoder's, the flow at the identity (``identity_planar_parameters``).  ``resume`` and
    ``at_step`` as for ``optimise_local_bound``."""
    check_int("planar flow length", length)
    fit = LocalFit() if fit is None else fit
    with torch.no_grad():
        q0, _ = model.posterior(images)
    generator = torch.Generator(device=q0.loc.device).manual_seed(fit.seed + 2)  # not the streams of the fit's draws
    planar = identity_planar_parameters(len(images), model.latent, length, generator, q0.loc.dtype)
    flow = PlanarChain(model.latent, length, amortized=True)
    with _frozen(model):
        start = (q0.loc, q0.log_scale, planar)
        return optimise_local_bound(model.log_joint, flow, images, start, fit, resume, at_step)


@torch.no_grad()
def fitted_log_weights(
    log_joint: LogJoint,
    flow: FlowLayer | None,
    parameters: Variational,
    images: Tensor,
    samples: int,
    generator: torch.Generator,
) -> Tensor:
    """``ln w_s = ln p(x, z_s) - ln q(z_s)`` for ``samples`` fresh draws ``z_s`` of each image's posterior ``q``:
    ``q_0`` and ``flow`` with per-image ``parameters`` (a ``LocalBound``'s fitted ones), draws from ``generator``;
    shape ``(S, B)``, float64.

    Any posterior whose support covers ``p(z | x)`` is a valid importance proposal: ``(1/S) sum_s w_s`` is unbiased
    for ``p(x)`` (its logarithm biased low), and the closer ``q`` is to ``p(z | x)`` the lighter the tail of the
    weights.  Draws independent of those ``F*`` was estimated on keep the two estimates apart.
    """
    loc = parameters[0]
    eps = torch.randn(samples, *loc.shape, dtype=loc.dtype, device=loc.device, generator=generator)
    return _log_weights(log_joint, flow, images, [t for t in parameters if t is not None], eps)


def identity_planar_parameters(
    batch: int, dim: int, length: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """Per-image parameters ``[u_1, w_1, b_1, u_2, ...]`` of ``length`` planar layers on ``R^dim`` that are each the
    identity, shape ``(batch, length (2 dim + 1))``: directions ``w ~ N(0, I / dim)``, then
    ``nf.flows.planar.identity_parameters``."""
    device = None if generator is None else generator.device
    w = torch.randn(batch, length, dim, dtype=dtype, device=device, generator=generator) / math.sqrt(dim)
    return planar_identity(w).reshape(batch, -1)


def _log_weights_with_grad(
    log_joint: LogJoint, flow: FlowLayer | None, images: Tensor, parameters: list[Tensor], eps: Tensor
) -> Tensor:
    """``ln w_s = ln p(x, z_K) - ln q_K(z_K)`` for ``z_0 = loc + exp(log_scale) eps_s``; shape ``(S, B)``."""
    q0 = DiagonalGaussian(parameters[0], parameters[1])
    z0 = q0.transform(eps)
    zk, log_q = push_forward(q0, flow, parameters[2] if flow is not None else None, z0)
    return log_joint(images, zk) - log_q


@torch.no_grad()
def _log_weights(
    log_joint: LogJoint, flow: FlowLayer | None, images: Tensor, parameters: list[Tensor], eps: Tensor
) -> Tensor:
    """``_log_weights_with_grad`` without gradients, a few draws at a time, in float64."""
    chunk = max(1, _EVALUATION_ROWS // max(1, images.shape[0]))
    parts = [_log_weights_with_grad(log_joint, flow, images, parameters, e) for e in eps.split(chunk)]
    return torch.cat(parts).double()


def _bound_and_se(log_w: Tensor) -> tuple[Tensor, Tensor]:
    """The bound ``-mean_s ln w_s`` and its standard error, per image."""
    return -log_w.mean(0), log_w.std(0) / math.sqrt(log_w.shape[0])


class ResumeMismatch(ValueError):
    """A state to resume from whose tensors do not fit the fit (another fit's); the message names the shapes."""


class _RowAdam:
    """Adam (Kingma & Ba 2015) on per-image tensors (images along the first dimension), each image with its own
    learning rate and step count, so that any subset of images can take a step or start afresh."""

    def __init__(self, parameters: list[Tensor], rate: float):
        self.parameters = [t.clone() for t in parameters]
        self.moments = [(torch.zeros_like(t), torch.zeros_like(t)) for t in self.parameters]
        batch, reference = len(parameters[0]), parameters[0]
        self.rate = torch.full((batch, 1), rate, dtype=reference.dtype, device=reference.device)
        self.count = torch.zeros((batch, 1), dtype=reference.dtype, device=reference.device)

    def step(self, rows: Tensor, gradients: tuple[Tensor, ...]) -> None:
        """One step of the images ``rows``, whose parameters' ``gradients`` are given (rows first)."""
        (b1, b2), rate = _ADAM_BETAS, self.rate[rows]
        self.count[rows] += 1
        count = self.count[rows]
        for p, (m, v), g in zip(self.parameters, self.moments, gradients):
            m[rows] = b1 * m[rows] + (1 - b1) * g
            v[rows] = b2 * v[rows] + (1 - b2) * g * g
            p[rows] -= rate * (m[rows] / (1 - b1**count)) / ((v[rows] / (1 - b2**count)).sqrt() + _ADAM_EPS)

    def state(self) -> dict[str, Any]:
        """Copies of the parameters, moments, rates and step counts."""
        return {
            "parameters": [t.clone() for t in self.parameters],
            "moments": [(m.clone(), v.clone()) for m, v in self.moments],
            "rate": self.rate.clone(),
            "count": self.count.clone(),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Take the values of a ``state()`` of an optimiser of the same shapes (one line naming a mismatch)."""
        mine = [*self.parameters, *(t for pair in self.moments for t in pair), self.rate, self.count]
        theirs = [*state["parameters"], *(t for pair in state["moments"] for t in pair), state["rate"], state["count"]]
        if [t.shape for t in mine] != [t.shape for t in theirs]:
            raise ResumeMismatch(
                f"the state to resume from has tensors of shapes {[tuple(t.shape) for t in theirs]}, "
                f"this fit {[tuple(t.shape) for t in mine]}: it is another fit's"
            )
        for t, value in zip(mine, theirs):
            t.copy_(value)

    def restart(self, rows: Tensor, factor: float) -> None:
        """The images ``rows`` start afresh (moments and step count zero) at ``factor`` times their learning rate."""
        self.rate[rows] *= factor
        self.count[rows] = 0
        for m, v in self.moments:
            m[rows], v[rows] = 0, 0


def _resumed(
    state: FitState,
    adam: _RowAdam,
    cuts: Tensor,
    steps: Tensor,
    converged: Tensor,
    draws: torch.Generator,
) -> tuple[int, Tensor, Tensor]:
    """Load a fit's ``state`` (``optimise_local_bound``'s ``resume``) into its optimiser, counters and draws; return
    its step, last checked bounds and running images."""
    adam.load(state)
    for t, name in ((cuts, "cuts"), (steps, "steps"), (converged, "converged")):
        t.copy_(state[name])
    draws.set_state(state["draws"])
    return int(state["step"]), state["previous"].clone(), state["active"].clone()


def _check_start(images: Tensor, flow: FlowLayer | None, start: Variational) -> None:
    """The starting parameters fit the images and the flow (one line naming the mismatch)."""
    loc, log_scale, params = start
    if loc.dim() != 2 or log_scale.shape != loc.shape or loc.shape[0] != images.shape[0]:
        raise ValueError(
            f"start needs loc and log_scale of shape (images, latent) = ({images.shape[0]}, D), "
            f"got {tuple(loc.shape)} and {tuple(log_scale.shape)}"
        )
    wanted = None if flow is None else (images.shape[0], flow.n_params)
    if (params is None) != (wanted is None) or (params is not None and tuple(params.shape) != wanted):
        raise ValueError(
            f"start's flow parameters must be {wanted}, got {None if params is None else tuple(params.shape)}"
        )


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters take no gradients inside (the model is fixed; only the per-image tensors move)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)
