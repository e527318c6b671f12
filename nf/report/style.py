"""The book's look: one colour per flow family on every page, and figure defaults readable at page width.

The colours are the Okabe-Ito palette (Okabe & Ito 2002; distinguishable with the common forms of
colour blindness), with purple for the convolutional flows; the diagonal-Gaussian baseline (no flow) is grey.
"""

from __future__ import annotations

FAMILY_COLOURS: dict[str, str] = {
    "none": "#666666",
    "planar": "#0072B2",
    "radial": "#E69F00",
    "nice-perm": "#009E73",
    "nice-perm+scale": "#56B4E9",
    "nice-orth": "#CC79A7",
    "nice-orth+scale": "#D55E00",
    "conv": "#6A3D9A",
}
OTHER_COLOUR = "#999999"
# Markers tell apart families whose points crowd at one flow length (the paper's values are drawn as squares).
FAMILY_MARKERS = {
    "planar": "o",
    "radial": "^",
    "nice-perm": "D",
    "nice-perm+scale": "v",
    "nice-orth": "P",
    "nice-orth+scale": "X",
    "conv": "*",
}

# Sizes for figures shown at the page width (about 8 inches of a 12-inch-wide figure read at 2/3 scale).
BOOK_RC: dict[str, object] = {
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def family_colour(family: str) -> str:
    """The colour of a flow family (``none``: the diagonal model) on every page of the book."""
    return FAMILY_COLOURS.get(family, OTHER_COLOUR)


def family_marker(family: str) -> str:
    """The marker of a flow family's own results in plots where several families share a flow length."""
    return FAMILY_MARKERS.get(family, "o")


def length_alpha(rank: int, count: int) -> float:
    """Opacity of the ``rank``-th of ``count`` flow lengths of one family: the longest flow fully opaque."""
    return 1.0 if count <= 1 else 0.5 + 0.5 * rank / (count - 1)


def length_shade(family: str, rank: int, count: int) -> str:
    """The colour of the ``rank``-th of ``count`` flow lengths of one family: the family's colour mixed with white in
    the proportion ``length_alpha`` gives (the longest pure), so lines stay crisp where they cross."""
    from matplotlib.colors import to_hex, to_rgb

    weight = length_alpha(rank, count)
    return to_hex(tuple(weight * c + (1 - weight) for c in to_rgb(family_colour(family))))


def length_linestyle(rank: int, count: int) -> str:
    """Line style of the ``rank``-th of ``count`` flow lengths of one family: the longest solid, shorter ones dashed,
    then dotted, so that a pale short flow stays visible under the others."""
    return ("-", "--", ":")[min(count - 1 - rank, 2)]


def use_book_style() -> None:
    """Apply the book's figure sizes, and in a notebook render figures as high-resolution PNGs."""
    import matplotlib

    matplotlib.rcParams.update(BOOK_RC)
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # not in a notebook kernel
        return
    set_matplotlib_formats("retina")
