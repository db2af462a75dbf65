"""Compare runs: mean ± std accuracy per epoch for each framework and experiment, as a table and one PNG."""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict

import numpy as np

from jaxresnet.config import RESUMABLE_CHANGES, TrainConfig
from jaxresnet.recipes import RECIPES, apply_recipe


class RunError(ValueError):
    """A run folder that cannot be compared (missing or unreadable files)."""


def load_run(path: str) -> tuple[dict, list[dict]]:
    try:
        with open(os.path.join(path, "metrics.json")) as f:
            history = json.load(f)
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
    except FileNotFoundError as e:
        raise RunError(f"{path} is not a run folder: {os.path.basename(e.filename)} is missing") from e
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: unreadable JSON ({e})") from e
    if not history:
        raise RunError(f"{path}: metrics.json holds no epoch")
    return config, history


def _experiment(config: dict) -> dict:
    """The fields that define the experiment; a config.json written before a field existed has its default."""
    ignore = set(RESUMABLE_CHANGES) | {"seed", "framework", "init", "dtype", "arch", "dataset_info"}
    return {k: v for k, v in {**TrainConfig().to_dict(), **config}.items() if k not in ignore}


def _label(framework: str, exp: dict) -> str:
    """framework, recipe, and the fields where the run departs from that recipe: "jax improved augment=none"."""
    recipe = exp.get("recipe", "reference")
    preset = _experiment(dataclasses.asdict(apply_recipe(TrainConfig(), recipe, set()))) if recipe in RECIPES else {}
    changed = [f"{k}={exp[k]}" for k in sorted(exp) if k != "recipe" and exp[k] != preset.get(k, exp[k])]
    return " ".join([framework, recipe, *changed])


def group_runs(paths: list[str]) -> dict[str, list[list[dict]]]:
    """label -> list of histories (one per seed). Runs of one experiment are labelled by framework; when
    the runs hold several experiments, each is labelled by its recipe and what departs from it too."""
    runs = []
    for path in paths:
        config, history = load_run(path)
        runs.append((config.get("framework", "jax"), _experiment(config), history))
    several = len({json.dumps(exp, sort_keys=True) for _, exp, _ in runs}) > 1
    groups: dict[str, list[list[dict]]] = defaultdict(list)
    for framework, exp, history in runs:
        groups[_label(framework, exp) if several else framework].append(history)
    return dict(groups)


def summarise(histories: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, std) over runs, up to the epoch all runs reached; NaN where an epoch was not scored."""
    n = min(len(h) for h in histories)
    values = np.array([[np.nan if h[i][key] is None else h[i][key] for i in range(n)] for h in histories], dtype=float)
    return np.arange(1, n + 1), values.mean(0), values.std(0)


def _cell(values: tuple[np.ndarray, np.ndarray, np.ndarray], i: int) -> str:
    _, mean, std = values
    return "-" if i >= len(mean) or np.isnan(mean[i]) else f"{mean[i]:.2f} ± {std[i]:.2f}"


def format_table(groups: dict[str, list[list[dict]]], markdown: bool = False) -> str:
    names = sorted(groups)
    header = ["epoch"]
    for name in names:
        header += [f"{name} train ({len(groups[name])} runs)", f"{name} test"]
    if len(names) == 2:
        header.append(f"test gap ({names[0]} - {names[1]})")
    stats = {name: {k: summarise(groups[name], k) for k in ("train_accuracy", "test_accuracy")} for name in names}
    n = max(len(stats[name]["test_accuracy"][0]) for name in names)
    rows = []
    for i in range(n):
        row = [str(i + 1)]
        for name in names:
            row += [_cell(stats[name][k], i) for k in ("train_accuracy", "test_accuracy")]
        if len(names) == 2:
            a, b = (stats[name]["test_accuracy"][1] for name in names)
            row.append(f"{a[i] - b[i]:+.2f}" if i < min(len(a), len(b)) and not np.isnan(a[i] - b[i]) else "-")
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header] + rows)


def plot_comparison(groups: dict[str, list[list[dict]]], path: str) -> list[str]:
    """Plots every group's test (solid, scored epochs) and train (dashed) curves; returns the curves' labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, name in enumerate(sorted(groups)):
        color = f"C{i % 10}"  # matplotlib's default cycle: as many experiments as the runs hold
        runs = len(groups[name])
        for key, style, label in (("test_accuracy", "-", "test"), ("train_accuracy", "--", "train")):
            epochs, mean, std = summarise(groups[name], key)
            scored = ~np.isnan(mean)  # --eval-every leaves epochs without a test score
            epochs, mean, std = epochs[scored], mean[scored], std[scored]
            ax.plot(
                epochs,
                mean,
                style,
                color=color,
                marker="o" if key == "test_accuracy" else None,
                label=f"{name} {label} (n={runs})",
            )
            if runs > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy per epoch: mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: many curves
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    labels = [line.get_label() for line in ax.get_lines()]
    plt.close(fig)
    return labels


def compare_runs(paths: list[str], output: str, markdown: bool = False) -> str:
    groups = group_runs(paths)
    plot_comparison(groups, output)
    return format_table(groups, markdown)
