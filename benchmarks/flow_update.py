"""How much does a long amortised flow cost?  Run by hand: ``python benchmarks/flow_update.py``.

Times, in one process with interleaved repetitions, one training update of
the MNIST DLGM (batch 100; the update as the trainer takes it: fused Adam with
the gradient norm clipped at 100, the report recipe's, or with ``--optimizer
rmsprop`` the paper's RMSprop; one parameter group) with
K = 0, 10, 40, 80 amortised planar layers, for three implementations of the
flow:

* ``fast``: ``nf.flows.PlanarChain`` (fused chain, hand-written backward);
* ``plain``: ``FlowSequence`` of ``Planar`` layers, layer by layer;
* ``Pyro``: a chain of Pyro's ``ConditionedPlanar`` transforms fed by the same
  amortisation head (optional: needs ``pip install pyro-ppl``).

Prints one line per K: ``K=<k>  fast/K0 <ratio>x`` then plain/K0, Pyro/K0 and
Pyro/fast.  Ratios come from medians over interleaved repetitions in one run,
so machine load affects all variants alike.  ``--eval`` also times the
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
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import re
import statistics
import sys
import tempfile
import time

import torch
from torch import Tensor, nn

from nf.experiments.training import checked_step, make_optimizer
from nf.flows import CircularConvolution, native
from nf.models.dlgm import DLGM
from nf.runs.cache import code_version


class PyroPlanarChain(nn.Module):
    """K Pyro ``ConditionedPlanar`` transforms taking their (b, u, w) from the DLGM's amortisation head."""

    def __init__(self, dim: int, length: int):
        super().__init__()
        from pyro.distributions.transforms.planar import ConditionedPlanar

        self.transform = ConditionedPlanar
        self.dim, self.length = dim, length
        self.n_params = length * (2 * dim + 1)

    def forward(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        d = self.dim
        log_det = z.new_zeros(z.shape[:-1])
        for layer in params.reshape(*params.shape[:-1], self.length, 2 * d + 1).unbind(-2):
            t = self.transform((layer[..., 2 * d :], layer[..., :d], layer[..., d : 2 * d]))
            y = t(z)
            log_det = log_det + t.log_abs_det_jacobian(z, y)
            z = y
        return z, log_det


def make_model(implementation: str, length: int) -> DLGM:
    torch.manual_seed(0)
    if implementation == "pyro":
        model = DLGM("planar", length, fused=True)
        if length > 0:
            model.flow = PyroPlanarChain(model.latent, length)
        return model
    return DLGM("planar", length, fused=implementation == "fast")


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
    lengths: list[int], implementations: list[str], repetitions: int, updates: int, batch: int, optimizer: str
) -> dict:
    x = torch.bernoulli(torch.rand(batch, 784, generator=torch.Generator().manual_seed(0)))
    steps = {(impl, k): update_step(make_model(impl, k), x, optimizer) for impl in implementations for k in lengths}
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
    try:
        import pyro  # noqa: F401

        implementations.append("pyro")
    except ImportError:
        print("Pyro not installed (pip install pyro-ppl): its column is skipped")
    print(f"compiled loops: {'built' if native.loops() is not None else 'unavailable, the Python loops run'}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.optimizer} "
        f"({'fused' if args.optimizer == 'adam' else 'foreach'}), "
        f"median of {args.repetitions} interleaved repetitions of {args.updates} updates"
    )
    lengths = sorted(set(args.lengths) | {0})
    median = time_updates(lengths, implementations, args.repetitions, args.updates, args.batch, args.optimizer)
    k0 = median[("fast", 0)]
    for k in lengths:
        fast = median[("fast", k)]
        line = f"K={k:<3} fast/K0 {fast / k0:.1f}x | plain/K0 {median[('plain', k)] / k0:.1f}x"
        if "pyro" in implementations:
            pyro_time = median[("pyro", k)]
            line += f" | Pyro/K0 {pyro_time / k0:.1f}x | Pyro/fast {pyro_time / fast:.1f}x"
        print(line, flush=True)
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
