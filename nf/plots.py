"""Figures shared by the chapters: densities on a grid, one colour map and extent."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

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


def plot_density(ax, density: Tensor, extent=EXTENT, title: str | None = None) -> None:
    """Draw a density on a grid with the book's colour map and extent, no axes."""
    ax.imshow(density.numpy(), extent=extent, origin="lower", cmap=CMAP, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def plot_samples(ax, samples: Tensor, extent=EXTENT, bins: int = 100, title: str | None = None) -> None:
    """A 2-D histogram of samples with the book's colour map and extent."""
    x0, x1, y0, y1 = extent
    ax.hist2d(samples[:, 0].numpy(), samples[:, 1].numpy(), bins=bins, range=[[x0, x1], [y0, y1]], cmap=CMAP)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=10)
