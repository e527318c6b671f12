"""Figures shared by the chapters: densities on a grid, one colour map and extent."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from nf.experiments.toy import ToyFlow
from nf.models.energies import target_energy
from nf.models.quadrature import log_normalizer
from nf.report.style import family_colour, family_marker

EXTENT = (-4.0, 4.0, -4.0, 4.0)  # the window of the paper's Fig. 3
CMAP = "viridis"


def grid(extent: tuple[float, float, float, float] = EXTENT, n: int = 200) -> Tensor:
    """An ``(n, n, 2)`` grid of points over ``extent = (x0, x1, y0, y1)``; rows run along z2."""
    x0, x1, y0, y1 = extent
    z1, z2 = torch.meshgrid(torch.linspace(x0, x1, n), torch.linspace(y0, y1, n), indexing="xy")
    return torch.stack([z1, z2], dim=-1)


def energy_density(energy: Callable[[Tensor], Tensor], extent=EXTENT, n: int = 200) -> Tensor:
    """``exp(-U)`` on the grid, normalised to sum to one over the window (for display)."""
    with torch.no_grad():
        log_p = -energy(grid(extent, n))
    p = torch.exp(log_p - log_p.max())
    return p / p.sum()


def plot_density(ax, density: Tensor, extent=EXTENT, title: str | None = None, vmax: float | None = None):
    """Draw a density on a grid with the book's colour map and extent, no axes (``vmax``: top of the scale).

    Returns the image, for a colour bar.
    """
    image = ax.imshow(
        density.numpy(), extent=extent, origin="lower", cmap=CMAP, interpolation="bilinear", vmin=0, vmax=vmax
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return image


def plot_fig3(
    energies: Sequence[str],
    columns: Sequence[str],
    fitted: Mapping[tuple[str, str], ToyFlow],
    n: int = 150,
):
    """The paper's Fig. 3, one block per flow family stacked vertically so every panel stays readable.

    In each block a row is an energy: the true density, then the fitted ``q_K`` of each length of that family
    (``columns`` are labels ``"<family> K=<length>"``). Every panel of a row shares the true density's colour
    scale, shown by the row's colour bar; fitted densities are exact (the flow inverted on the grid) on the
    window ``[-4, 4]^2``.
    """
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(column.split(" K=")[0] for column in columns))
    width = 1 + max(sum(c.startswith(f"{f} K=") for c in columns) for f in families)
    points = grid(EXTENT, n)
    truth = {}
    with torch.no_grad():
        for name in energies:
            energy = target_energy(name)
            truth[name] = torch.exp(-energy(points.double()) - log_normalizer(energy)).float()
    fig = plt.figure(
        figsize=(2.1 * width + 0.8, 2.0 * len(energies) * len(families) + 0.4 * len(families)), layout="constrained"
    )
    blocks = fig.subfigures(len(families), 1, squeeze=False)[:, 0]
    for block, family in zip(blocks, families):
        block.suptitle(family, fontweight="bold", color=family_colour(family))
        mine = [c for c in columns if c.startswith(f"{family} K=")]
        axes = block.subplots(len(energies), width, squeeze=False)
        for i, name in enumerate(energies):
            vmax = truth[name].max().item()
            image = plot_density(axes[i, 0], truth[name], vmax=vmax, title="true density" if i == 0 else None)
            axes[i, 0].set_ylabel(name, rotation=0, labelpad=16, va="center", fontsize=12)
            for j in range(1, width):
                if j > len(mine):
                    axes[i, j].set_axis_off()
                    continue
                with torch.no_grad():
                    q = torch.exp(fitted[(name, mine[j - 1])].log_prob(points))
                plot_density(axes[i, j], q, vmax=vmax, title=mine[j - 1].split(" ", 1)[1] if i == 0 else None)
            block.colorbar(image, ax=axes[i, :], shrink=0.9, label="density")
    return fig


def plot_versus_length(
    rows: Sequence[Mapping],
    energies: Sequence[str],
    key: str,
    ylabel: str,
    axes=None,
    legend: bool = True,
    bars: str = "sd",
):
    """``key`` (the mean over seeds) against flow length, one panel per energy, one line per family; its bars
    ``"sd"`` (mean +- sd, the rows' ``key_sd``) or ``"range"`` (the lowest to the highest seed, ``key_min`` to
    ``key_max``: positive wherever every seed is, so it suits a log scale)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(energies), figsize=(3 * len(energies), 2.6), layout="constrained")
    for ax, name in zip(axes, energies):
        families = sorted({r["family"] for r in rows if r["energy"] == name})
        for family in families:
            line = sorted((r for r in rows if r["energy"] == name and r["family"] == family), key=lambda r: r["length"])
            if bars == "sd":
                yerr = [r[key + "_sd"] for r in line]
            elif bars == "range":
                yerr = [[r[key] - r[key + "_min"] for r in line], [r[key + "_max"] - r[key] for r in line]]
            else:
                raise ValueError(f"bars={bars!r}: expected 'sd' or 'range'")
            ax.errorbar(
                [r["length"] for r in line],
                [r[key] for r in line],
                yerr=yerr,
                marker=family_marker(family),
                capsize=3,
                color=family_colour(family),
                label=family,
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["length"] for r in rows}))
        ax.set_xticklabels(sorted({r["length"] for r in rows}))
        ax.set_title(name)
        ax.set_xlabel("flow length K")
    axes[0].set_ylabel(ylabel)
    if legend:
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    return axes


def plot_fig3d(rows: Sequence[Mapping], energies: Sequence[str]):
    """Fig. 3(d): the free energy (top, with its floor ``-ln Z`` dashed; mean +- sd over seeds) and the exact KL
    (bottom, log scale; the mean, with bars from the lowest to the highest seed, which a log scale can show
    whole) against flow length, one panel per energy and one line per family."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(energies), figsize=(3 * len(energies), 5.2), layout="constrained", squeeze=False)
    plot_versus_length(rows, energies, "free_energy", "free energy", axes[0])
    plot_versus_length(rows, energies, "kl", "KL(q‖p)", axes[1], legend=False, bars="range")
    for ax, name in zip(axes[0], energies):
        ax.axhline(-log_normalizer(target_energy(name)), color="black", linestyle="--", linewidth=1)  # the floor -ln Z
    for ax in axes[1]:
        ax.set_yscale("log")
    return fig


def plot_kernel_and_spectrum(layer, axes=None):
    """A circular-convolution layer's kernel ``w`` and the magnitudes ``|W_k|`` of its DFT."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 2.8), layout="constrained")
    with torch.no_grad():
        kernel, magnitude = layer.kernel(), layer.spectrum().abs()
    axes[0].stem(kernel.numpy())
    axes[0].set_title("kernel $w$")
    axes[1].stem(magnitude.numpy())
    axes[1].set_title("$|W_k|$, $k = 0 \\dots D/2$ (all $> 0$: invertible)")
    axes[1].set_ylim(0, None)
    return axes


def plot_log_gate(alphas: Sequence[float] = (0.05, 0.5, 2.0), axes=None):
    """The pointwise LogGate ``y = sign(z) ln(1 + alpha |z|) / alpha`` and its log-derivative, for a few ``alpha``."""
    import matplotlib.pyplot as plt

    from nf.flows import LogGate

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 2.8), layout="constrained")
    z = torch.linspace(-6, 6, 401).unsqueeze(-1)
    for alpha in alphas:
        gate = LogGate(1)
        with torch.no_grad():
            gate.raw_alpha.fill_(math.log(math.expm1(alpha)))
            y, log_det = gate(z)
        axes[0].plot(z.squeeze(-1), y.squeeze(-1), label=f"α = {alpha:g}")
        axes[1].plot(z.squeeze(-1), log_det, label=f"α = {alpha:g}")
    axes[0].set_title("y = sign(z) ln(1 + α|z|) / α")
    axes[1].set_title("ln |dy/dz|")
    for ax in axes:
        ax.set_xlabel("z")
    axes[0].legend()
    return axes
