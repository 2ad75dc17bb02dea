"""Metric report: a text table (``format_table``), ``metrics.json`` and heat maps (matplotlib, Agg backend).

``results`` is what ``eoflow_fast.metrics.evaluate`` returns: {metric name: {key: value}}.
Scalars go to the table; every value (arrays as nested lists) goes to the JSON; these matrices get
heat maps when present: nmi.nmi_matrix (latent x factor), fvh_lt.variance and dbsr_ls.theta
(latent x feature), flow.mpmi (latent x latent, the top dims by explained entropy).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

HEATMAPS = {
    ("nmi", "nmi_matrix"): ("NMI(z_i; c_k) = I / H(c_k)", "factor", "latent"),
    ("fvh_lt", "variance"): ("FVH-LT traversal variance", "feature", "latent"),
    ("dbsr_ls", "theta"): ("DBSR-LS coefficients |B + S|", "feature", "latent"),
    ("flow", "mpmi"): ("MPMI (nats), top dims by explained entropy", "latent", "latent"),
}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else str(v)
    return value


def scalar_rows(results: dict) -> list[tuple[str, str, float]]:
    """(metric, key, value) for every scalar number in the results, in insertion order."""
    rows = []
    for metric, scores in results.items():
        for key, value in scores.items():
            if isinstance(value, (bool, np.bool_)):
                continue
            if isinstance(value, (int, float, np.integer, np.floating)):
                rows.append((metric, key, float(value)))
    return rows


def format_table(results: dict) -> str:
    """A fixed-width text table of the scalar scores."""
    rows = scalar_rows(results)
    width = max([len(f"{m}.{k}") for m, k, _ in rows] + [6])
    lines = [f"{'metric':<{width}}  value", "-" * (width + 14)]
    lines += [f"{m + '.' + k:<{width}}  {v:.6g}" for m, k, v in rows]
    return "\n".join(lines)


def save_heatmaps(results: dict, out_dir, factor_names=None) -> list[Path]:
    """One PNG per matrix listed in ``HEATMAPS`` that is present; returns the paths written.
    ``factor_names`` (one per factor column) label the factor axis instead of column numbers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = []
    for (metric, key), (title, xlabel, ylabel) in HEATMAPS.items():
        if metric not in results or key not in results[metric]:
            continue
        matrix = np.abs(np.asarray(_jsonable(results[metric][key]), dtype=np.float64))
        fig, ax = plt.subplots(figsize=(min(12, 2 + 0.4 * matrix.shape[1]), min(10, 1.5 + 0.4 * matrix.shape[0])))
        image = ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=ax)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if xlabel == "factor" and factor_names is not None and len(factor_names) == matrix.shape[1]:
            ax.set_xticks(range(matrix.shape[1]), list(factor_names), rotation=45, ha="right")
        if metric == "flow" and "mpmi_dims" in results[metric] and matrix.shape[0] <= 50:
            dims = np.asarray(results[metric]["mpmi_dims"])
            ax.set_xticks(range(len(dims)), dims, fontsize=6)
            ax.set_yticks(range(len(dims)), dims, fontsize=6)
        fig.tight_layout()
        path = out_dir / f"{metric}_{key}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(results: dict, out_dir, print_table: bool = False, factor_names=None) -> Path:
    """Print the table (only if ``print_table``: a command prints its own summary once), merge ``results`` into ``out_dir/metrics.json`` (a metric evaluated
    again replaces its own entry; every other metric already there is kept, so an ``eval`` of some
    metrics never drops the ones training wrote), write the heat maps (named by metric, factor axes
    labelled with ``factor_names`` when given); returns the JSON path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if print_table:
        print(format_table(results))
    path = out_dir / "metrics.json"
    merged = {}
    if path.is_file():
        try:
            merged = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            merged = None
        if not isinstance(merged, dict):  # unreadable, or JSON of another shape: never overwritten unseen
            os.replace(path, path.with_name("metrics.unreadable.json"))  # kept under a name that says why
            merged = {}
    merged.update(_jsonable(results))
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=2))
    os.replace(tmp, path)
    save_heatmaps(results, out_dir, factor_names)
    return path
