"""Tables and figures of the MNIST chapter: our runs beside the paper's Table 2 and Fig. 4."""

from __future__ import annotations

from typing import Any

from .cache import Run
from .paper import TABLE2_NEG_LOG_LIKELIHOOD


PAPER_ROW_PREFIX = {"planar": "DLGM+NF", "nice-perm": "DLGM+NICE"}  # the paper's NICE rows: no scaling layer


def paper_key(flow: str, length: int) -> str | None:
    """The Table 2 row of a model, if the paper reports it (planar and NICE-perm; no radial, scaled or conv rows)."""
    if flow == "none" or length == 0:
        return "DLGM diagonal covariance"
    if flow in PAPER_ROW_PREFIX:
        return f"{PAPER_ROW_PREFIX[flow]} (k = {length})"
    return None


def model_name(config: dict[str, Any]) -> str:
    return "DLGM diagonal" if config["length"] == 0 else f"DLGM+{config['flow']} K={config['length']}"


def table2(runs: list[Run]) -> list[dict[str, str]]:
    """Table 2 side by side: the paper's -ln p(x), ours (importance-sampled, with s.e.), the difference."""
    rows = []
    for run in runs:
        m, c = run.load_json("metrics.json"), run.config
        key = paper_key(c["flow"], c["length"])
        paper = TABLE2_NEG_LOG_LIKELIHOOD.get(key) if key else None
        rows.append({
            "model": model_name(c),
            "paper -ln p(x)": f"{paper:.1f}" if paper is not None else "—",
            "ours -ln p(x)": f"{m['test_nll']:.2f} ± {m['test_nll_se']:.2f}",
            "ours − paper": f"{m['test_nll'] - paper:+.2f}" if paper is not None else "—",
            "ours F(x)": f"{m['test_bound']:.2f} ± {m['test_bound_se']:.2f}",
            "ours KL(q‖p(z|x))": f"{m['test_kl']:.2f} ± {m['test_kl_se']:.2f}",
            "parameters": f"{m['parameters']:,}",
        })
    return rows


def timing(runs: list[Run]) -> list[dict[str, str]]:
    """Milliseconds per training update (held-out evaluations included) on the machine that trained each run."""
    return [{"model": model_name(r.config), "ms per update": f"{1000 * r.load_json('metrics.json')['seconds_per_update']:.1f}"}
            for r in runs]


def plot_fig4(runs: list[Run], axes=None):
    """Fig. 4: the bound, the KL to the true posterior and -ln p(x) against flow length, with the paper's curve."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3.2), layout="constrained")
    panels = [("test_bound", "F(x) (bound)"), ("test_kl", "KL(q‖p(z|x))"), ("test_nll", "−ln p(x)")]
    baseline = [r for r in runs if r.config["length"] == 0]
    for flow in sorted({r.config["flow"] for r in runs if r.config["length"] > 0}):
        line = sorted(baseline + [r for r in runs if r.config["flow"] == flow], key=lambda r: r.config["length"])
        metrics = [r.load_json("metrics.json") for r in line]
        lengths = [r.config["length"] for r in line]
        for ax, (key, label) in zip(axes, panels):
            ax.errorbar(lengths, [m[key] for m in metrics], yerr=[m[key + "_se"] for m in metrics],
                        marker="o", capsize=3, label=f"ours, {flow}")
    for flow, style in [("planar", "k--"), ("nice-perm", "k:")]:
        if any(r.config["flow"] == flow for r in runs):
            paper = [(k, TABLE2_NEG_LOG_LIKELIHOOD[paper_key(flow, k)]) for k in (0, 10, 20, 40, 80)]
            axes[2].plot(*zip(*paper), style, marker="s", label=f"paper, {flow} (Table 2)")
    for ax, (_, label) in zip(axes, panels):
        ax.set_xlabel("flow length K")
        ax.set_title(label)
    axes[2].legend(fontsize=8)
    return axes


def flow_parameters(runs: list[Run]) -> dict[str, int]:
    """Parameters each model adds to the diagonal-Gaussian DLGM (flow layers plus the head's extra outputs), by run key."""
    baseline = next(r for r in runs if r.config["length"] == 0).load_json("metrics.json")["parameters"]
    return {r.key: r.load_json("metrics.json")["parameters"] - baseline for r in runs}


def plot_versus_parameters(runs: list[Run], ax=None):
    """``-ln p(x)`` against the parameters a flow adds to the diagonal model: the equal-parameter comparison."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    extra = flow_parameters(runs)
    for flow in sorted({r.config["flow"] for r in runs if r.config["length"] > 0}):
        line = sorted((r for r in runs if r.config["flow"] == flow), key=lambda r: r.config["length"])
        metrics = [r.load_json("metrics.json") for r in line]
        ax.errorbar([extra[r.key] for r in line], [m["test_nll"] for m in metrics],
                    yerr=[m["test_nll_se"] for m in metrics], marker="o", capsize=3, label=flow)
        for r, m in zip(line, metrics):
            ax.annotate(f"K={r.config['length']}", (extra[r.key], m["test_nll"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    diagonal = next(r for r in runs if r.config["length"] == 0).load_json("metrics.json")["test_nll"]
    ax.axhline(diagonal, color="gray", linestyle="--", linewidth=1, label="diagonal")
    ax.set_xscale("log")
    ax.set_xlabel("parameters added to the diagonal DLGM")
    ax.set_ylabel("−ln p(x)")
    ax.legend(fontsize=8)
    return ax


def paired_table(runs: list[Run], without: str, with_: str) -> list[dict[str, str]]:
    """Per flow length: ``-ln p(x)`` and the bound of flow ``without`` beside ``with_`` and their differences."""
    by = {(r.config["flow"], r.config["length"]): r.load_json("metrics.json") for r in runs}
    rows = []
    for k in sorted({k for f, k in by if f == without and (with_, k) in by}):
        a, b = by[(without, k)], by[(with_, k)]
        rows.append({
            "K": str(k),
            f"{without} −ln p(x)": f"{a['test_nll']:.2f}",
            f"{with_} −ln p(x)": f"{b['test_nll']:.2f}",
            "change in −ln p(x)": f"{b['test_nll'] - a['test_nll']:+.2f}",
            f"{without} F(x)": f"{a['test_bound']:.2f}",
            f"{with_} F(x)": f"{b['test_bound']:.2f}",
            "change in F(x)": f"{b['test_bound'] - a['test_bound']:+.2f}",
        })
    return rows


def plot_learning_curves(runs: list[Run], axes=None):
    """Training bound (mean over each logging interval) and held-out bound against updates, one line per model."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.4), layout="constrained")
    for run in runs:
        history = run.load_json("metrics.json")["history"]
        steps = [h[0] for h in history]
        axes[0].plot(steps, [h[2] for h in history], label=model_name(run.config))
        axes[1].plot(steps, [h[3] for h in history], label=model_name(run.config))
    for ax, title in zip(axes, ["training F (annealed)", "held-out F (beta = 1)"]):
        ax.set_xlabel("updates")
        ax.set_title(title)
    lowest = min(h[3] for run in runs for h in run.load_json("metrics.json")["history"])
    axes[0].set_ylim(None, lowest + 60)  # the annealed bound starts far below: beta is small
    axes[1].set_ylim(lowest - 5, lowest + 60)
    axes[1].legend(fontsize=8)
    return axes


def plot_images(ax, images, rows: int, title: str | None = None) -> None:
    """A grid of 28x28 images (uint8 tensors of shape (N, 784))."""
    n = len(images)
    cols = (n + rows - 1) // rows
    grid = images.reshape(rows, cols, 28, 28).permute(0, 2, 1, 3).reshape(rows * 28, cols * 28)
    ax.imshow(grid.numpy(), cmap="gray_r", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def plot_samples_and_reconstructions(runs: list[Run]):
    """Samples, test images and reconstructions of the longest planar model (else the last run)."""
    import matplotlib.pyplot as plt

    longest = max((r for r in runs if r.config["flow"] == "planar"), key=lambda r: r.config["length"], default=runs[-1])
    images = longest.load_tensors("images.pt")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
    plot_images(axes[0], images["samples"], rows=8, title=f"samples, {model_name(longest.config)}")
    plot_images(axes[1], images["originals"], rows=4, title="test images")
    plot_images(axes[2], images["reconstructions"], rows=4, title="reconstructions")
    return axes
