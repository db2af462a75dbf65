"""Compare runs: mean ± std accuracy per epoch for each framework, as a table and one PNG."""
from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np

from jaxresnet.config import RESUMABLE_CHANGES


class RunError(ValueError):
    """A run folder that cannot be compared (missing or unreadable files, mismatched experiments)."""


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
    ignore = set(RESUMABLE_CHANGES) | {"seed", "framework", "init", "dtype", "arch"}
    return {k: v for k, v in config.items() if k not in ignore}


def group_runs(paths: list[str]) -> dict[str, list[list[dict]]]:
    """framework -> list of histories (one per run). Runs must share the experiment but for the seed."""
    groups: dict[str, list[list[dict]]] = defaultdict(list)
    reference = None
    for path in paths:
        config, history = load_run(path)
        exp = _experiment(config)
        if reference is None:
            reference = (path, exp)
        elif exp != reference[1]:
            diff = sorted(k for k in set(exp) | set(reference[1]) if exp.get(k) != reference[1].get(k))
            raise RunError(f"{path} is a different experiment from {reference[0]} ({', '.join(diff)} differ)")
        groups[config.get("framework", "jax")].append(history)
    return dict(groups)


def summarise(histories: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, std) over runs, up to the epoch all runs reached."""
    n = min(len(h) for h in histories)
    values = np.array([[h[i][key] for i in range(n)] for h in histories], dtype=float)
    return np.arange(1, n + 1), values.mean(0), values.std(0)


def format_table(groups: dict[str, list[list[dict]]], markdown: bool = False) -> str:
    names = sorted(groups)
    header = ["epoch"]
    for name in names:
        header += [f"{name} train ({len(groups[name])} runs)", f"{name} test"]
    if len(names) == 2:
        header.append(f"test gap ({names[0]} - {names[1]})")
    stats = {name: {k: summarise(groups[name], k) for k in ("train_accuracy", "test_accuracy")} for name in names}
    n = min(len(stats[name]["test_accuracy"][0]) for name in names)
    rows = []
    for i in range(n):
        row = [str(i + 1)]
        for name in names:
            for k in ("train_accuracy", "test_accuracy"):
                _, mean, std = stats[name][k]
                row.append(f"{mean[i]:.2f} ± {std[i]:.2f}")
        if len(names) == 2:
            a, b = (stats[name]["test_accuracy"][1][i] for name in names)
            row.append(f"{a - b:+.2f}")
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header] + rows)


def plot_comparison(groups: dict[str, list[list[dict]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for color, name in zip(("tab:blue", "tab:orange", "tab:green", "tab:red"), sorted(groups)):
        runs = len(groups[name])
        for key, style, label in (("test_accuracy", "-", "test"), ("train_accuracy", "--", "train")):
            epochs, mean, std = summarise(groups[name], key)
            ax.plot(epochs, mean, style, color=color, marker="o" if key == "test_accuracy" else None,
                    label=f"{name} {label} (n={runs})")
            if runs > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("JAX vs PyTorch: mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare_runs(paths: list[str], output: str, markdown: bool = False) -> str:
    groups = group_runs(paths)
    plot_comparison(groups, output)
    return format_table(groups, markdown)
