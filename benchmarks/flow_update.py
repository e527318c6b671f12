"""How much does a long amortised flow cost, and how do other libraries' flows compare?  Run by hand:
``python benchmarks/flow_update.py``.

Times, in one process with interleaved repetitions, one training update of
the MNIST DLGM (batch 100; the update as the trainer takes it: fused Adam with
the gradient norm clipped at 100, the report recipe's, or with ``--optimizer
rmsprop`` the paper's RMSprop; one parameter group) with
K = 0, 10, 40, 80 amortised planar layers, for three implementations of the
flow:

* ``fast``: ``nf.flows.PlanarChain`` (fused chain, hand-written backward);
* ``plain``: ``FlowSequence`` of ``Planar`` layers, layer by layer;
* ``Pyro``: a chain of Pyro's ``ConditionedPlanar`` transforms fed by the same
  amortisation head (``pyro-ppl``, in the benchmark extra
  ``benchmarks/requirements.txt``; its column is skipped without it).

Prints one line per K: ``K=<k>  fast/K0 <ratio>x`` then plain/K0, Pyro/K0 and
Pyro/fast.  Ratios come from medians over interleaved repetitions in one run,
so machine load affects all variants alike.  Before Pyro is timed, its chain
is checked to compute our loss and gradients (``check ...`` lines; a chain
that does not is not timed).

``--peers`` (after ``pip install -r requirements.txt -r
benchmarks/requirements.txt``: pyro-ppl, normflows and zuko, pinned) adds the
other libraries' planar and radial flows, measured in the same run:

* the DLGM update above with radial flows too (``radial K=<k>`` lines): our
  ``RadialChain`` fused and layer by layer, and Pyro's ``ConditionedRadial``
  chain fed by the same head;
* the toy fit (paper Fig. 3: a learned diagonal Gaussian pushed through K = 2,
  8, 32 planar or radial layers with global parameters, ``--peer-toy-lengths``,
  on the target ``--peer-toy-energy``, batch 256, the toy trainer's fused Adam,
  an update with ``checked_step``, the free energy at beta = 0.5): ours (``nf.experiments.toy.ToyFlow`` as
  ``train_toy`` builds it: layer by layer), Pyro's ``Planar``/``Radial`` in a
  ``TransformedDistribution`` (``rsample`` then ``log_prob``, Pyro's
  validation off) and normflows' ``flows.Planar``/``flows.Radial`` in a
  ``NormalizingFlow`` (``reverse_kld``); zuko (1.6.0) has no planar or radial
  flow, and normflows none conditioned per data point, so they have no column
  there.  Each library is first checked on our parameters (copied, converted
  where it parametrises otherwise: normflows' radial ``alpha`` is ``|alpha'|``
  where ours is ``softplus(a)``) and the same base draws: the relative
  difference of the annealed free energy in float64 and float32 and of the
  gradients of the parameters parametrised alike in float64 must be within
  ``AGREEMENT`` (1e-9 in float64, 1e-5 in float32), else the library
  ``differs`` for that flow and K and is not timed.

Then a ``peers:`` block: per update (``DLGM``, ``toy``), flow and K, ours
against K = 0 (DLGM) and in updates per second, and each library's time per
update relative to ours (ours = 1.00; for the DLGM ours is the fused chain,
``plain`` ours layer by layer), after a ``peer versions:`` line (torch and each
peer).  ``nf.report.tables.peers_table`` renders the block for the compute
appendix.

``--eval`` also times the
importance-sampled ``-ln p(x)`` (S = 200) over 10,000 images; ``--toy`` times
toy fits serially and with parallel workers; ``--families`` times an update
with every DLGM flow family (planar, radial, NICE, convolutional) at the same ``K``
against ``K = 0``, as training runs it (planar and radial chains fused,
``PlanarChain`` and ``RadialChain``; NICE folded, ``CouplingChain``; the
convolutional flow fused, ``ConvChain``) and layer by layer (``plain``), at
each thread count of ``--family-threads``; the NICE and convolutional
chains run their compiled loops (``nf.flows.native``) and, on the
``python loops`` lines, their Python loops;
``--circular`` times a circular convolution with its
log-determinant (real FFTs, O(D log D)) against a dense D x D linear map
with ``slogdet`` (O(D^3)); ``--bfloat16`` times an update with the encoder
and decoder under bfloat16 autocast (the flow and its parameter head in
float32) against the same update in float32.

The committed report: ``python benchmarks/flow_update.py --peers --families --family-threads 1 2 --bfloat16
--circular --eval --toy --output results/benchmarks/flow_update.txt``.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import importlib.metadata
import importlib.util
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nf.experiments.toy import DEFAULT_TOY_CONFIG, ToyFlow
from nf.experiments.training import checked_step, make_optimizer
from nf.flows import CircularConvolution, native
from nf.models.dlgm import DLGM
from nf.models.energies import ENERGIES, target_energy
from nf.runs.cache import code_version


class PyroChain(nn.Module):
    """K of Pyro's conditioned transforms of one family, taking their parameters per image from the DLGM's
    amortisation head, in the layout of our chain of that family (``layer_size`` numbers per layer)."""

    def __init__(self, dim: int, length: int, layer_size: int, transform):
        super().__init__()
        self.transform = transform
        self.dim, self.length, self.layer_size = dim, length, layer_size
        self.n_params = length * layer_size

    def split(self, layer: Tensor) -> tuple[Tensor, ...]:
        """The transform's parameters from one layer's numbers in our layout."""
        raise NotImplementedError

    def forward(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_det = z.new_zeros(z.shape[:-1])
        for layer in params.reshape(*params.shape[:-1], self.length, self.layer_size).unbind(-2):
            t = self.transform(self.split(layer))
            y = t(z)
            log_det = log_det + t.log_abs_det_jacobian(z, y)
            z = y
        return z, log_det


class PyroPlanarChain(PyroChain):
    """K Pyro ``ConditionedPlanar`` transforms taking their (b, u, w) from the DLGM's amortisation head (our layout
    ``[u, w, b]``; Pyro's ``u_hat`` is ours: ``u + (m(w'u) - w'u) w / ||w||^2``, ``m(x) = -1 + softplus(x)``)."""

    def __init__(self, dim: int, length: int):
        from pyro.distributions.transforms.planar import ConditionedPlanar

        super().__init__(dim, length, 2 * dim + 1, ConditionedPlanar)

    def split(self, layer: Tensor) -> tuple[Tensor, ...]:
        d = self.dim
        return layer[..., 2 * d :], layer[..., :d], layer[..., d : 2 * d]


class PyroRadialChain(PyroChain):
    """K Pyro ``ConditionedRadial`` transforms taking their (x0, alpha', beta') from the DLGM's amortisation head (our
    layout ``[z0, a, b]``; Pyro's ``alpha = softplus(alpha')``, ``beta = -alpha + softplus(beta')`` are ours)."""

    def __init__(self, dim: int, length: int):
        from pyro.distributions.transforms.radial import ConditionedRadial

        super().__init__(dim, length, dim + 2, ConditionedRadial)

    def split(self, layer: Tensor) -> tuple[Tensor, ...]:
        d = self.dim
        return layer[..., :d], layer[..., d : d + 1], layer[..., d + 1 :]


PYRO_CHAINS = {"planar": PyroPlanarChain, "radial": PyroRadialChain}


def make_model(implementation: str, length: int, family: str = "planar") -> DLGM:
    """The DLGM with a ``family`` flow of ``length`` layers run by ``implementation`` (``fast``: our fused chain,
    ``plain``: ours layer by layer, ``pyro``: Pyro's conditioned transforms); the same weights for all three."""
    torch.manual_seed(0)
    if implementation == "pyro":
        model = DLGM(family, length, fused=True)
        if length > 0:
            model.flow = PYRO_CHAINS[family](model.latent, length)
        return model
    return DLGM(family, length, fused=implementation == "fast")


def update_step(model: DLGM, x: Tensor, optimizer_name: str):
    """One update as the trainer takes it (``checked_step``): Adam with the gradient norm clipped at 100 (the report
    recipe), or the paper's RMSprop unclipped; one parameter group, a small step so the model barely moves."""
    settings = {"optimizer": optimizer_name, "learning_rate": 1e-5, "momentum": 0.9}
    optimizer = make_optimizer([{"params": list(model.parameters()), "scale": 1.0}], settings)
    clip = 100.0 if optimizer_name == "adam" else 0.0

    def step() -> None:
        checked_step(model.free_energy(x, beta=0.5).mean(), optimizer, 0, (0, 0.0), "benchmark", None, clip)

    return step


def interleaved_medians(steps: dict, repetitions: int, updates: int) -> dict:
    """Median seconds per call of each step, over ``repetitions`` rounds that time every step in turn."""
    for step in steps.values():  # warm up
        step()
    times: dict = {key: [] for key in steps}
    for _ in range(repetitions):
        for key, step in steps.items():
            start = time.perf_counter()
            for _ in range(updates):
                step()
            times[key].append((time.perf_counter() - start) / updates)
    return {key: statistics.median(v) for key, v in times.items()}


def time_updates(
    lengths: list[int],
    implementations: list[str],
    repetitions: int,
    updates: int,
    batch: int,
    optimizer: str,
    families: tuple[str, ...] = ("planar",),
) -> dict:
    """Median seconds per update of each ``(implementation, family, K)``, interleaved; ``K = 0`` (the diagonal
    model, the same for every family) under ``planar``.  Pyro is timed only where its chain first computes our loss
    and gradients (``dlgm_agreement``); where it does not, its entries are missing."""
    x = torch.bernoulli(torch.rand(batch, 784, generator=torch.Generator().manual_seed(0)))
    steps = {}
    for family in families:
        for k in lengths:
            if k == 0 and family != "planar":
                continue
            for impl in implementations:
                if (
                    impl == "pyro"
                    and k > 0
                    and not report_agreement("Pyro", "DLGM", family, k, dlgm_agreement(family, k, x))
                ):
                    continue
                steps[(impl, family, k)] = update_step(make_model(impl, k, family), x, optimizer)
    return interleaved_medians(steps, repetitions, updates)


COMPILED_LOOPS = ("nice", "conv")  # the families (by prefix) whose fused chains have compiled loops


def on_python_loops(step):
    """``step`` with the fused chains on their Python loops (``nf.flows.native.python_loops``)."""

    def run() -> None:
        with native.python_loops():
            step()

    return run


def time_families(
    lengths: list[int], families: list[str], repetitions: int, updates: int, batch: int, optimizer: str
) -> None:
    """One update with each DLGM flow family, interleaved, as a ratio to the diagonal model (K = 0).

    Every family is timed twice: as the book trains it (``amortized_flow``: the planar and radial chains and the
    convolutional flow one fused node each, NICE with its mixings folded into the coupling networks) and layer by
    layer (``<family> plain``, the reference implementation); the chains with compiled loops also on their Python
    loops (``<family> python loops``).
    """
    x = torch.bernoulli(torch.rand(batch, 784, generator=torch.Generator().manual_seed(0)))
    steps = {("none", 0): update_step(DLGM("none", 0), x, optimizer)}
    rows = []
    for family in families:
        variants = [(family, True, False)]
        if family.split("-")[0] in COMPILED_LOOPS and native.loops() is not None:
            variants.append((f"{family} python loops", True, True))
        variants.append((f"{family} plain", False, False))
        for label, fused, python in variants:
            rows.append(label)
            for k in lengths:
                torch.manual_seed(0)
                step = update_step(DLGM(family, k, fused=fused), x, optimizer)
                steps[(label, k)] = on_python_loops(step) if python else step
    median = interleaved_medians(steps, repetitions, updates)
    k0 = median[("none", 0)]
    for label in rows:
        cells = [f"K={k} {median[(label, k)] / k0:.1f}x" for k in lengths]
        print(f"update/K0 {label:<29} " + " | ".join(cells), flush=True)


class Autocast(nn.Module):
    """Run ``module`` under CPU bfloat16 autocast; its output back in float32."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(x).float()


def time_bfloat16(models: list[tuple[str, int]], repetitions: int, updates: int, batch: int, optimizer: str) -> None:
    """One update with the encoder and decoder in bfloat16 (autocast) against float32, per model, interleaved."""
    x = torch.bernoulli(torch.rand(batch, 784, generator=torch.Generator().manual_seed(0)))
    steps = {}
    for family, k in models:
        for precision in ("float32", "bfloat16"):
            torch.manual_seed(0)
            model = DLGM(family, k)
            if precision == "bfloat16":
                model.encoder, model.decoder = Autocast(model.encoder), Autocast(model.decoder)
            steps[(family, k, precision)] = update_step(model, x, optimizer)
    median = interleaved_medians(steps, repetitions, updates)
    cells = [
        f"{family} K={k} {median[(family, k, 'bfloat16')] / median[(family, k, 'float32')]:.2f}x"
        for family, k in models
    ]
    print("update bfloat16/float32 (encoder and decoder autocast): " + " | ".join(cells), flush=True)


def time_circular(dims: list[int], repetitions: int, batch: int = 100) -> None:
    """Circular convolution with log-det (FFT) against a dense linear map with slogdet, at growing D."""
    for dim in dims:
        layer = CircularConvolution(dim)
        matrix = torch.randn(dim, dim) / dim**0.5 + torch.eye(dim)
        z = torch.randn(batch, dim)

        def fft() -> None:
            layer(z)

        def dense() -> None:
            z @ matrix.T
            torch.linalg.slogdet(matrix)

        median = interleaved_medians({"fft": fft, "dense": dense}, repetitions, 1)
        print(f"D={dim:<5} dense+slogdet / circular FFT: {median['dense'] / median['fft']:.1f}x", flush=True)


def time_evaluation(lengths: list[int], implementations: list[str], images: int, samples: int, batch: int) -> None:
    x = torch.bernoulli(torch.rand(images, 784, generator=torch.Generator().manual_seed(0)))
    for k in lengths:
        for impl in implementations if k > 0 else implementations[:1]:
            model = make_model(impl, k)
            start = time.perf_counter()
            for chunk in x.split(batch):
                model.importance_log_likelihood(chunk, samples)
            print(
                f"eval K={k} {impl}: {time.perf_counter() - start:.1f} s for {images} images, S={samples}", flush=True
            )


def time_toy_fits(fits: int, updates: int = 1000) -> None:
    from nf.experiments.toy import fit_toys, run_configs

    configs = run_configs(
        ["U1", "U2"],
        ["planar", "radial"],
        [8],
        list(range(max(fits // 4, 1))),
        updates=updates,
        anneal_updates=updates // 2,
    )
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            fit_toys(configs, folder, workers=workers)
            minutes = (time.perf_counter() - start) / 60
        print(
            f"toy fits (K=8, {updates} updates), {workers} worker(s): {len(configs) / minutes:.1f} fits per minute",
            flush=True,
        )


# --- the peers (--peers): other libraries' planar and radial flows, checked against ours, then timed ------------

PEERS = {"pyro-ppl": "pyro", "normflows": "normflows", "zuko": "zuko"}  # distribution -> module
PEER_NAMES = {"pyro-ppl": "Pyro", "normflows": "normflows", "zuko": "zuko"}  # distribution -> name in the report
REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt")
AGREEMENT = {"float64": 1e-9, "float32": 1e-5}  # largest relative difference of loss and gradients that agrees
PEER_HEADER = ("update", "flow", "K", "ours/K0", "ours/s", "ours", "plain", "pyro", "normflows", "zuko")


def pinned_versions(path: str = REQUIREMENTS) -> dict[str, str]:
    """``name -> version`` of the ``name==version`` lines of the benchmark's requirements."""
    pins = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                name, separator, version = line.split("#")[0].strip().partition("==")
                if separator:
                    pins[name.strip().lower()] = version.strip()
    return pins


def installed(distribution: str) -> str | None:
    """The installed version of ``distribution`` if its module is there (found, not imported), else None."""
    try:
        found = importlib.util.find_spec(PEERS[distribution]) is not None
        return importlib.metadata.version(distribution) if found else None
    except (ImportError, ValueError):  # not there (PackageNotFoundError is an ImportError), or its import was blocked
        return None


def versions_line(versions: dict[str, str | None]) -> str:
    """``peer versions: torch <version>; <peer> <version>, ...``: a version other than the pinned one says so."""
    pins, cells = pinned_versions(), []
    for name, version in versions.items():
        if version is None:
            cells.append(f"{name} not installed")
        else:
            pinned = pins.get(name)
            cells.append(f"{name} {version}" + (f" (pinned {pinned})" if pinned and pinned != version else ""))
    missing = " (pip install -r benchmarks/requirements.txt)" if None in versions.values() else ""
    return f"peer versions: torch {torch.__version__}; " + ", ".join(cells) + missing


def zuko_planar_radial() -> list[str] | None:
    """The names in ``zuko.flows`` and ``zuko.transforms`` that speak of planar or radial flows (None if zuko does not
    import), found in a separate process: importing zuko switches off argument validation for every
    ``torch.distributions`` object."""
    code = (
        "import zuko.flows, zuko.transforms\n"
        "names = {n for m in (zuko.flows, zuko.transforms) for n in dir(m)}\n"
        "names = {n for n in names if 'planar' in n.lower() or 'radial' in n.lower()}\n"
        "print(' '.join(sorted(names)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return result.stdout.split() if result.returncode == 0 else None


def relative(ours: Tensor, peer: Tensor) -> float:
    """``max |ours - peer| / max |ours|``."""
    return ((ours - peer).abs().max() / ours.abs().max().clamp_min(torch.finfo(ours.dtype).tiny)).item()


def gradient_difference(pairs: list[tuple[Tensor, Tensor]]) -> float:
    """The largest relative difference (``relative``) between the gradients of paired parameters, ours first."""
    return max(relative(a.grad.reshape(-1), b.grad.reshape(-1)) for a, b in pairs)


def report_agreement(library: str, update: str, family: str, k: int, found: dict[str, float]) -> bool:
    """Print what an equivalence check found; whether the peer agrees with ours (``AGREEMENT``) and may be timed."""
    agrees = all(value <= AGREEMENT[key.split()[0]] for key, value in found.items())
    numbers = ", ".join(f"{key} {value:.0e}" for key, value in found.items())
    print(f"check {library} {update} {family} K={k}: {numbers}: {'agrees' if agrees else 'DIFFERS, not timed'}")
    return agrees


def dlgm_agreement(family: str, length: int, x: Tensor) -> dict[str, float]:
    """Pyro's chain against our fused chain in the same DLGM (same weights, images and base draws): the relative
    difference of the loss (the annealed free energy the benchmark's update takes) in float64 and float32, and of
    every weight's gradient in float64."""
    found = {}
    for dtype in (torch.float64, torch.float32):
        name = str(dtype).removeprefix("torch.")
        losses, models = [], []
        for impl in ("fast", "pyro"):
            model = make_model(impl, length, family).to(dtype)
            torch.manual_seed(1)
            loss = model.free_energy(x.to(dtype), beta=0.5).mean()
            loss.backward()
            losses.append(loss.detach())
            models.append(dict(model.named_parameters()))
        found[f"{name} loss"] = relative(*losses)
        if dtype == torch.float64:
            found[f"{name} gradients"] = gradient_difference([(p, models[1][n]) for n, p in models[0].items()])
    return found


class EnergyTarget(nn.Module):
    """``exp(-U)`` as normflows wants a target: ``log_prob(z) = -U(z)``."""

    def __init__(self, energy):
        super().__init__()
        self.energy = energy

    def log_prob(self, z: Tensor) -> Tensor:
        return -self.energy(z)


class ToyFit:
    """One library's toy fit (paper section 6.1): a learned diagonal Gaussian ``q_0`` pushed through ``K`` planar or
    radial layers with global parameters.  ``model`` holds every parameter; ``loss`` is the annealed free energy
    ``mean(ln q_K(z_K) + beta U(z_K))`` on ``batch`` base draws from the global random stream; ``copy_from`` sets the
    parameters to those of one of our ``ToyFlow`` s (converting where the library parametrises otherwise) and
    returns the pairs (ours, the library's) that are the same number in the same parametrisation."""

    def __init__(self, family: str, length: int, model: ToyFlow | None = None):
        self.model = ToyFlow(family, length) if model is None else model

    def loss(self, energy, batch: int, beta: float) -> Tensor:
        zk, log_q = self.model.sample(batch)  # as nf.experiments.toy.train_toy takes it
        return (log_q + beta * energy(zk)).mean()

    def copy_from(self, ours: ToyFlow) -> list[tuple[Tensor, Tensor]]:
        self.model.load_state_dict(ours.state_dict())
        return list(zip(ours.parameters(), self.model.parameters()))


class PyroToyFit(ToyFit):
    """Pyro: ``TransformedDistribution(Normal(loc, exp(log_scale)).to_event(1), [Planar(2) or Radial(2), ...])``,
    ``rsample`` then ``log_prob`` (the log-determinants come from the transforms' caches); Pyro's validation off."""

    def __init__(self, family: str, length: int):
        from pyro.distributions.transforms import Planar, Radial

        self.model = nn.Module()
        self.model.loc, self.model.log_scale = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
        self.model.transforms = nn.ModuleList((Planar if family == "planar" else Radial)(2) for _ in range(length))

    def loss(self, energy, batch: int, beta: float) -> Tensor:
        import pyro
        import pyro.distributions as dist

        with pyro.validation_enabled(False):  # Pyro's documented setting for speed (argument and support checks off)
            base = dist.Normal(self.model.loc, self.model.log_scale.exp()).to_event(1)
            q = dist.TransformedDistribution(base, list(self.model.transforms))
            z = q.rsample((batch,))
            return (q.log_prob(z) + beta * energy(z)).mean()

    def copy_from(self, ours: ToyFlow) -> list[tuple[Tensor, Tensor]]:
        """Pyro's planar ``(u, w, bias)`` and radial ``(x0, alpha', beta')`` are parametrised as ours."""
        pairs = [(ours.loc, self.model.loc), (ours.log_scale, self.model.log_scale)]
        for layer, t in zip(ours.flow.layers, self.model.transforms):
            if hasattr(layer, "u"):
                pairs += [(layer.u, t.u), (layer.w, t.w), (layer.b, t.bias)]
            else:
                pairs += [(layer.z0, t.x0), (layer.a, t.alpha_prime), (layer.b, t.beta_prime)]
        with torch.no_grad():
            for a, b in pairs:
                b.copy_(a)
        return pairs


class NormflowsToyFit(ToyFit):
    """normflows: ``NormalizingFlow(DiagGaussian(2), [Planar((2,)) or Radial((2,)), ...], target)``, loss
    ``reverse_kld(batch, beta)``.  Its radial flow takes ``alpha = |alpha'|`` where ours takes ``softplus(a)`` (and
    ``beta = softplus(beta') - alpha`` as ours): ``alpha'`` is set to ``softplus(a)``, so the loss is the same but
    the gradient to ``alpha'`` is not ours to ``a`` (the base's and the other parameters' are compared)."""

    def __init__(self, family: str, length: int):
        import normflows

        layer = normflows.flows.Planar if family == "planar" else normflows.flows.Radial
        flows = [layer((2,)) for _ in range(length)]
        self.model = normflows.NormalizingFlow(normflows.distributions.DiagGaussian(2), flows, p=None)
        self.target = None

    def loss(self, energy, batch: int, beta: float) -> Tensor:
        if self.target is None or self.target.energy is not energy:
            self.target = self.model.p = EnergyTarget(energy)
        return self.model.reverse_kld(batch, beta)

    def copy_from(self, ours: ToyFlow) -> list[tuple[Tensor, Tensor]]:
        q0 = self.model.q0
        pairs = [(ours.loc, q0.loc), (ours.log_scale, q0.log_scale)]
        with torch.no_grad():
            for layer, flow in zip(ours.flow.layers, self.model.flows):
                if hasattr(layer, "u"):
                    pairs += [(layer.u, flow.u), (layer.w, flow.w), (layer.b, flow.b)]
                else:
                    pairs += [(layer.z0, flow.z_0), (layer.b, flow.beta)]
                    flow.alpha.copy_(F.softplus(layer.a))
            for a, b in pairs:
                b.copy_(a.reshape(b.shape))
        return pairs


TOY_FITS = {"pyro-ppl": PyroToyFit, "normflows": NormflowsToyFit}


def our_toy_fit(family: str, length: int) -> ToyFit:
    """Our toy fit (``ToyFlow``, as ``train_toy`` builds it) with every parameter moved off its initial value by a
    seeded random step, so that every parameter counts in the equivalence checks."""
    fit = ToyFit(family, length)
    generator = torch.Generator().manual_seed(length)
    with torch.no_grad():
        for p in fit.model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=generator))
    return fit


def toy_agreement(
    peer: type[ToyFit], ours: ToyFlow, family: str, length: int, energy, batch: int, beta: float
) -> dict[str, float]:
    """A library's toy fit against ours on the same parameters and base draws: the relative difference of the loss in
    float64 and float32, and of the gradients of the parameters both parametrise alike in float64."""
    found = {}
    for dtype in (torch.float64, torch.float32):
        name = str(dtype).removeprefix("torch.")
        source = copy.deepcopy(ours).to(dtype)
        fit = peer(family, length)
        fit.model.to(dtype)
        pairs = fit.copy_from(source)
        losses = []
        for f in (ToyFit(family, length, source), fit):
            torch.manual_seed(2)
            loss = f.loss(energy, batch, beta)
            loss.backward()
            losses.append(loss.detach())
        found[f"{name} loss"] = relative(*losses)
        if dtype == torch.float64:
            found[f"{name} gradients"] = gradient_difference(pairs)
    return found


def toy_step(fit: ToyFit, energy, batch: int, beta: float):
    """One toy update as ``train_toy`` takes it (``checked_step``, the toy recipe's Adam)."""
    optimizer = make_optimizer([{"params": list(fit.model.parameters()), "scale": 1.0}], DEFAULT_TOY_CONFIG)

    def step() -> None:
        checked_step(fit.loss(energy, batch, beta), optimizer, 0, (0, 0.0), "benchmark", None)

    return step


def time_toy_peers(
    lengths: list[int], libraries: list[str], energy_name: str, repetitions: int, updates: int, beta: float = 0.5
) -> tuple[dict, set]:
    """Median seconds per toy update (``ToyFlow`` and each library's fit that agrees with it), interleaved, keyed by
    ``(library, family, K)``; and the ``(library, family, K)`` whose check failed."""
    energy, batch = target_energy(energy_name), DEFAULT_TOY_CONFIG["batch_size"]
    steps, differs = {}, set()
    for family in ("planar", "radial"):
        for k in lengths:
            ours = our_toy_fit(family, k)
            steps[("ours", family, k)] = toy_step(ours, energy, batch, beta)
            for library in libraries:
                found = toy_agreement(TOY_FITS[library], ours.model, family, k, energy, batch, beta)
                if report_agreement(PEER_NAMES[library], f"toy {energy_name}", family, k, found):
                    fit = TOY_FITS[library](family, k)
                    fit.copy_from(ours.model)
                    steps[(library, family, k)] = toy_step(fit, energy, batch, beta)
                else:
                    differs.add((library, family, k))
    return interleaved_medians(steps, repetitions, updates), differs


def peer_line(cells) -> str:
    """One line of the peers block: ``peers:`` then the cells in fixed columns (``nf.report.tables.peer_rows``
    reads them back)."""
    widths = (6, 7, 3, 8, 7, 5, 6, 7, 10, 6)
    return "peers: " + " ".join(f"{str(c):<{w}}" for c, w in zip(cells, widths)).rstrip()


def print_peers(
    update_median: dict,
    lengths: list[int],
    toy_median: dict,
    toy_lengths: list[int],
    versions: dict[str, str | None],
    toy_differs: set,
) -> None:
    """The peers block: per update (the DLGM's, the toy fit's), flow and K, each library's time per update relative
    to ours (ours = 1.0), with ours against K = 0 (the DLGM) and in updates per second."""
    zuko = ["-"] if versions.get("zuko") else ["absent"]
    if versions.get("zuko"):
        names = zuko_planar_radial()
        if names is None:
            found = "does not import"
        elif names:
            found = f"has {', '.join(names)} (not wired in here)"
        else:
            found = "has no planar or radial flow (zuko.flows, zuko.transforms)"
        print(f"peer note: zuko {versions['zuko']} {found}: no zuko column")
    print("peer note: normflows has no planar or radial flow conditioned per data point: no DLGM column")
    print("peer note: ours is our fused chain in the DLGM, and in the toy fit ToyFlow as train_toy builds it")
    print("peer note: below, time per update relative to ours (ours = 1.00); '-' no such flow, 'differs' failed its")
    print("    equivalence check (not timed), 'absent' not installed; ours/K0 against the DLGM without a flow")
    print(peer_line(PEER_HEADER))
    k0 = update_median[("fast", "planar", 0)]

    def ratio(median: dict, key, ours: float, library: str) -> str:
        if key in median:
            return f"{median[key] / ours:.2f}"
        return "absent" if not versions.get(library, True) else "differs"

    for family in sorted({f for _, f, _ in update_median}):
        for k in [k for k in lengths if k > 0]:
            fast = update_median[("fast", family, k)]
            pyro = ratio(update_median, ("pyro", family, k), fast, "pyro-ppl")
            cells = ["DLGM", family, k, f"{fast / k0:.2f}", f"{1 / fast:.1f}", "1.00"]
            print(peer_line([*cells, f"{update_median[('plain', family, k)] / fast:.2f}", pyro, "-", *zuko]))
    for family in ("planar", "radial"):
        for k in toy_lengths:
            ours = toy_median[("ours", family, k)]
            cells = ["toy", family, k, "-", f"{1 / ours:.0f}", "1.00", "-"]
            for library in ("pyro-ppl", "normflows"):
                key = (library, family, k)
                cells.append("differs" if key in toy_differs else ratio(toy_median, key, ours, library))
            print(peer_line([*cells, *zuko]))


def cpu_description() -> str:
    """The CPU's model name and its bfloat16 instructions (from ``/proc/cpuinfo`` where there is one): the ratios
    depend on the CPU, the bfloat16 line most of all."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or "CPU unknown"
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.MULTILINE)
    bfloat16 = sorted(set(flags.group(1).split()) & {"avx512_bf16", "amx_bf16"}) if flags else []
    name = model.group(1).strip() if model else platform.processor() or "CPU unknown"
    return f"{name} (bfloat16 instructions: {', '.join(bfloat16) or 'none'})"


class Tee:
    """Write to the terminal and to a file; the file is replaced atomically when closed."""

    def __init__(self, path: str):
        self.path, self.terminal, self.lines = path, sys.stdout, []
        atexit.register(self.close)

    def write(self, text: str) -> None:
        self.terminal.write(text)
        self.lines.append(text)

    def flush(self) -> None:
        self.terminal.flush()

    def close(self) -> None:
        temporary = f"{self.path}.tmp"
        with open(temporary, "w") as f:
            f.write("".join(self.lines))
        os.replace(temporary, self.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[0, 10, 40, 80])
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--updates", type=int, default=5, help="updates per timing")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--optimizer",
        choices=["adam", "rmsprop"],
        default="adam",
        help="the update's optimiser, as training builds it (adam: the report recipe's; rmsprop: the paper's)",
    )
    parser.add_argument("--eval", action="store_true", help="also time importance-sampled -ln p(x)")
    parser.add_argument("--eval-images", type=int, default=10_000)
    parser.add_argument("--toy", action="store_true", help="also time toy fits")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also time radial DLGM flows (ours and Pyro's) and toy fits with Pyro's and normflows' planar and radial "
        "flows, each checked against ours first (pip install -r benchmarks/requirements.txt)",
    )
    parser.add_argument("--peer-toy-lengths", type=int, nargs="+", default=[2, 8, 32], help="toy flow lengths")
    parser.add_argument("--peer-toy-energy", default="U1", choices=sorted(ENERGIES), help="toy target")
    parser.add_argument("--peer-toy-updates", type=int, default=50, help="toy updates per timing")
    parser.add_argument("--toy-fits", type=int, default=8, help="toy fits to time (a multiple of 4)")
    parser.add_argument("--toy-updates", type=int, default=1000, help="updates per toy fit")
    parser.add_argument("--families", action="store_true", help="also time radial, NICE and convolutional flows")
    parser.add_argument("--circular", action="store_true", help="also time circular convolution against a dense map")
    parser.add_argument("--bfloat16", action="store_true", help="also time bfloat16 autocast against float32")
    parser.add_argument(
        "--family-threads",
        type=int,
        nargs="+",
        default=None,
        help="thread counts to time the flow families at (default: the current one); "
        "training runs use 1 thread per run",
    )
    parser.add_argument(
        "--output", default=None, help="also write the report to this file (with machine and code version)"
    )
    args = parser.parse_args()
    if args.output:
        sys.stdout = Tee(args.output)
        print(
            f"code version {code_version()}; {cpu_description()}, {platform.machine()}, {os.cpu_count()} cores; "
            f"{time.strftime('%Y-%m-%d')}; command: python benchmarks/flow_update.py {' '.join(sys.argv[1:])}"
        )

    threads_at_start = torch.get_num_threads()
    implementations = ["fast", "plain"]
    versions = {name: installed(name) for name in PEERS}
    if versions["pyro-ppl"] is not None:
        implementations.append("pyro")
    else:
        print("Pyro not installed (pip install -r benchmarks/requirements.txt): its column is skipped")
    print(f"compiled loops: {'built' if native.loops() is not None else 'unavailable, the Python loops run'}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.optimizer} "
        f"({'fused' if args.optimizer == 'adam' else 'foreach'}), "
        f"median of {args.repetitions} interleaved repetitions of {args.updates} updates"
    )
    if args.peers:
        print(versions_line(versions))
    lengths = sorted(set(args.lengths) | {0})
    families = ("planar", "radial") if args.peers else ("planar",)
    median = time_updates(
        lengths, implementations, args.repetitions, args.updates, args.batch, args.optimizer, families
    )
    k0 = median[("fast", "planar", 0)]
    for family in families:
        for k in lengths if family == "planar" else [k for k in lengths if k > 0]:
            fast = median[("fast", family, k)]
            line = f"{'' if family == 'planar' else family + ' '}K={k:<3} fast/K0 {fast / k0:.1f}x"
            line += f" | plain/K0 {median[('plain', family, k)] / k0:.1f}x"
            if ("pyro", family, k) in median:
                pyro_time = median[("pyro", family, k)]
                line += f" | Pyro/K0 {pyro_time / k0:.1f}x | Pyro/fast {pyro_time / fast:.1f}x"
            print(line, flush=True)
    if args.peers:
        libraries = [name for name in TOY_FITS if versions[name] is not None]
        print(
            f"toy fits against peers: {args.peer_toy_energy}, batch {DEFAULT_TOY_CONFIG['batch_size']}, "
            f"Adam (fused, as the toy trainer), median of {args.repetitions} interleaved repetitions of "
            f"{args.peer_toy_updates} updates"
        )
        toy_lengths = sorted(set(args.peer_toy_lengths))
        toy_median, toy_differs = time_toy_peers(
            toy_lengths, libraries, args.peer_toy_energy, args.repetitions, args.peer_toy_updates
        )
        print_peers(median, lengths, toy_median, toy_lengths, versions, toy_differs)
    if args.families:
        for threads in args.family_threads or [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            print(f"flow families, {threads} thread{'s' if threads > 1 else ''}:")
            time_families(
                [k for k in lengths if k > 0],
                ["planar", "radial", "nice-perm", "nice-perm+scale", "conv"],
                args.repetitions,
                args.updates,
                args.batch,
                args.optimizer,
            )
        torch.set_num_threads(threads_at_start)
    if args.bfloat16:
        time_bfloat16(
            [("none", 0), ("planar", 20), ("nice-perm", 20)], args.repetitions, args.updates, args.batch, args.optimizer
        )
    if args.circular:
        time_circular([64, 256, 1024, 4096], args.repetitions)
    if args.eval:
        time_evaluation([0, max(lengths)], implementations[:2], args.eval_images, 200, 100)
    if args.toy:
        time_toy_fits(args.toy_fits, args.toy_updates)


if __name__ == "__main__":
    main()
