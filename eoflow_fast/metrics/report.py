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
import time
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


def save_heatmaps(results: dict, out_dir, factor_names=None, label: str | None = None) -> list[Path]:
    """One PNG per matrix listed in ``HEATMAPS`` that is present; returns the paths written.
    ``factor_names`` (one per factor column) label the factor axis instead of column numbers;
    ``label`` (the checkpoint, ``source_label``) is added to each title."""
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
        ax.set_title(title if label is None else f"{title}\n{label}")
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


FORMAT = "eoflow_fast.metrics/2"
OLDER_FILE = "unknown checkpoint (a metrics.json written before checkpoints were recorded)"


def source_label(source: dict | None) -> str:
    """The key of one checkpoint's results in ``metrics.json``: ``"step S, weights HHHHHHHHHHHH"``
    (the first 12 hex digits of the weights digest), or ``"unknown checkpoint"``."""
    if source is None:
        return "unknown checkpoint"
    return f"step {source['step']}, weights {str(source['weights'])[:12]}"


def _read_blocks(path: Path) -> dict:
    """{label: {"checkpoint", "written", "metrics"}} of an existing ``metrics.json``, current block
    first; a file of the earlier flat layout ({metric: scores}) becomes one block labelled
    ``OLDER_FILE``; an unreadable file is moved to ``metrics.unreadable.json`` (never overwritten unseen)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):  # unreadable, or JSON of another shape: kept under a name that says why
        os.replace(path, path.with_name("metrics.unreadable.json"))
        return {}
    if data.get("format") != FORMAT:
        return {OLDER_FILE: {"checkpoint": None, "written": None, "metrics": data}} if data else {}
    current = {k: data.get(k) for k in ("checkpoint", "written", "metrics")}
    return {data.get("label", source_label(current["checkpoint"])): current, **data.get("earlier", {})}


def write_report(results: dict, out_dir, print_table: bool = False, factor_names=None,
                 source: dict | None = None) -> Path:
    """Print the table (only if ``print_table``: a command prints its own summary once), write
    ``results`` into ``out_dir/metrics.json`` and the heat maps (named by metric, titled with the
    checkpoint, factor axes labelled with ``factor_names`` when given); returns the JSON path.

    ``source`` names the weights the results came from (``train.checkpoint.source``: step,
    checkpoint file, weights digest). ``metrics.json`` holds ``{"format", "label", "checkpoint",
    "written", "metrics", "earlier"}``: ``metrics`` are the results of the checkpoint ``label``
    alone; results of other checkpoints are kept, each under its own label, in ``earlier``. A
    metric evaluated again on the same weights replaces its own entry (an ``eval`` of some metrics
    keeps the others training wrote for those weights); results of other weights are never merged
    into the current ones. Without a ``source`` the weights are unknown, so nothing is merged: the
    results form a block of their own."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if print_table:
        print(format_table(results))
    path = out_dir / "metrics.json"
    blocks = _read_blocks(path)
    written = time.strftime("%Y-%m-%dT%H:%M:%S")
    label = source_label(source) if source is not None else f"unknown checkpoint (written {written})"
    while source is None and label in blocks:  # two writes within a second: still two blocks
        label += "+"
    block = blocks.pop(label, {"checkpoint": None, "metrics": {}})
    known = {k: v for k, v in (source or {}).items() if v is not None}  # a file name learnt later is added
    block = {"checkpoint": {**(block["checkpoint"] or {}), **known} or None, "written": written,
             "metrics": {**block["metrics"], **_jsonable(results)}}
    body = {"format": FORMAT, "label": label, **block, "earlier": blocks}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, path)
    save_heatmaps(results, out_dir, factor_names, label)
    return path
