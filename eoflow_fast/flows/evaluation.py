"""EOFlow evaluation report (spec §5.3 [INFERRED protocol]) and its plots.

Table (all on the test split, images in [0, 1], PSNR per image averaged, peak 1):
  bits/dim   (NLL/D + log quant_bins)/ln 2, dequantised, without and with the training noise sigma
  entropy    exact H_i (``EOFlow.explained_entropy``), total entropy, MTC = sum H_i - H
  compress   for each core size C: PSNR of g([z_core, 0]) and of PCA truncation to C components,
             compression ratio D/C (latent count, no quantisation)
  denoise    for sigma_test in {0.05, 0.1, 0.2} and each C: PSNR(noisy), PSNR(EOFlow top-C),
             PSNR(PCA top-C), gains = denoised - noisy (dB)
  core rule  per sigma_test: C_auto = #{i : H_i > 0.5 log(2 pi e sigma_test^2)} (the noise floor),
             from EOFlow's explained entropies H_i and from PCA's Gaussian entropies
             0.5 log(2 pi e lambda_i) (i.e. lambda_i > sigma_test^2), with its PSNR, next to the
             best C of the searched core sizes and its PSNR
An exact reconstruction has PSNR +inf: printed "exact", written "inf" in JSON.
PCA is fitted on (up to ``pca_samples``) training items: x_hat = mu + P_C P_C^T (x - mu).
"""
from __future__ import annotations

import contextlib
import json
import math
import numbers
from pathlib import Path

import torch

from .eoflow import EOFlow, core_above_floor, mean_psnr, psnr

DENOISE_SIGMAS = (0.05, 0.1, 0.2)


def default_core_sizes(D: int) -> list[int]:
    """Powers of two from 1 (D <= 256) or 16 up to D, plus D."""
    start = 1 if D <= 256 else 16
    sizes = [2 ** p for p in range(int(math.log2(start)), int(math.log2(D)) + 1)]
    return sorted(set(sizes + [D]))


class PCA:
    """PCA of flattened data X (N, D): mean (D,), components (D, K) by decreasing eigenvalue,
    eigenvalues (K,) of the covariance (1/N normalisation), K = min(N, D); ``rank`` = min(N - 1, D),
    the most components centred data of N items can determine."""

    def __init__(self, X: torch.Tensor):
        X = X.reshape(X.shape[0], -1).double()
        self.mean = X.mean(0)
        _, S, Vh = torch.linalg.svd(X - self.mean, full_matrices=False)
        self.components = Vh.T
        self.eigenvalues = S ** 2 / X.shape[0]
        self.rank = min(X.shape[0] - 1, X.shape[1])

    def core_above_noise(self, sigma: float) -> int:
        """Components whose Gaussian entropy 0.5 log(2 pi e lambda_i) exceeds the noise floor
        0.5 log(2 pi e sigma^2) (i.e. lambda_i > sigma^2), at least 1."""
        return core_above_floor(0.5 * torch.log(2 * math.pi * math.e * self.eigenvalues), sigma)

    def truncate(self, x: torch.Tensor, C: int) -> torch.Tensor:
        """mu + P_C P_C^T (x - mu); x itself when C = D (P P^T = I: exact, not round-off).
        Between ``rank`` and D the top C components are not determined by the fitted items: refused."""
        if C >= self.components.shape[0]:
            return x.clone()
        if C > self.rank:
            raise ValueError(f"PCA.truncate: C = {C} exceeds the rank {self.rank} of the {self.rank + 1} fitted items")
        flat = x.reshape(x.shape[0], -1).double() - self.mean
        P = self.components[:, :C]
        return ((flat @ P) @ P.T + self.mean).to(x.dtype).reshape(x.shape)


def _stack(dataset, n: int) -> torch.Tensor:
    n = min(n, len(dataset))
    items = [dataset[i] for i in range(n)]
    return torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])


def _stack_conditions(model: EOFlow, dataset, n: int) -> torch.Tensor | None:
    """The condition of the first n items (their labels) for a conditional model, else None."""
    if not model.cond_channels:
        return None
    return torch.as_tensor([int(dataset[i][1]) for i in range(min(n, len(dataset)))])


def _batched(fn, x: torch.Tensor, batch_size: int = 256, model: EOFlow | None = None,
             c: torch.Tensor | None = None) -> torch.Tensor:
    """fn over row batches of x; a conditional model is conditioned on the matching rows of c."""
    out = []
    for i in range(0, x.shape[0], batch_size):
        with contextlib.nullcontext() if c is None else model.conditioned(c[i:i + batch_size]):
            out.append(fn(x[i:i + batch_size]))
    return torch.cat(out)


@torch.no_grad()
def evaluate_model(model: EOFlow, train_set, test_set, run_dir, *, core_sizes=None, eval_samples: int = 512,
                   entropy_samples: int = 256, entropy_batch: int = 256, entropy_chunk: int = 64,
                   pca_samples: int | None = None, plots: bool = True, seed: int = 0,
                   source: dict | None = None) -> dict:
    """Compute the table above, set ``model.latent_order`` from the exact entropy (one JVP pass
    handles ``entropy_batch`` points x ``entropy_chunk`` dims), write
    ``RUN_DIR/eval.json``, the table as text to ``RUN_DIR/eval.txt`` and ``RUN_DIR/entropy.json``
    (and the plots), return the report. Nothing is printed: the command that asked prints its summary.
    PCA is fitted on ``pca_samples`` training items (default: 4096, or one more than the largest
    C < D); a C above the rank of the items it got reports PSNR PCA None ("n/a"), never a PCA of
    fewer components under C's name. ``source`` (``train.checkpoint.source``: step, checkpoint file,
    weights digest) is the report's ``checkpoint`` and the first line of ``eval.txt``: the files
    say which weights their numbers are of."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    model.eval()
    torch.manual_seed(seed)
    x_test = _stack(test_set, eval_samples).to(device)
    c_test = _stack_conditions(model, test_set, eval_samples)
    c_test = None if c_test is None else c_test.to(device)
    D = model.dim
    core_sizes = list(core_sizes or default_core_sizes(D))
    outside = [C for C in core_sizes if isinstance(C, bool) or not isinstance(C, numbers.Integral) or not 1 <= C <= D]
    if outside:  # before: left out silently (an empty table, and an IndexError in the plots when none was left)
        raise ValueError(f"evaluate_model: core_sizes must be integers in [1, D = {D}], got {outside}")
    if pca_samples is None:
        pca_samples = max([4096] + [C + 1 for C in core_sizes if C < D])
    pca = PCA(_stack(train_set, pca_samples))

    def pca_psnr(x, C):
        """PSNR of the top-C PCA reconstruction of x against x_test; None above the PCA's rank."""
        return None if pca.rank < C < D else mean_psnr(pca.truncate(x, C).to(device), x_test, "PCA PSNR")

    ent = model.explained_entropy(x_test[:entropy_samples], batch_size=entropy_batch, chunk=entropy_chunk,
                                  c=None if c_test is None else c_test[:entropy_samples])
    model.set_order(ent["entropy"])
    sorted_h = ent["entropy"][ent["order"].cpu()]
    noise_var = model.sigma ** 2 + (1.0 / (12 * model.quant_bins ** 2) if model.dequantize else 0.0)
    pca_h = 0.5 * torch.log(2 * math.pi * math.e * (pca.eigenvalues + noise_var))
    (run_dir / "entropy.json").write_text(json.dumps({
        "entropy": ent["entropy"].tolist(), "order": ent["order"].tolist(),
        "pca_entropy": pca_h.tolist(), "samples": int(min(entropy_samples, x_test.shape[0])),
        "weights": model.weights_digest()}))

    report: dict = {
        "checkpoint": source,
        "dim": D,
        "bits_per_dim": model.bits_per_dim(x_test, c=c_test),
        "bits_per_dim_noisy": model.bits_per_dim(x_test, sigma=model.sigma, c=c_test),
        "total_entropy": float(ent["total_entropy"]),
        "mtc": float(ent["mtc"]),
        "entropy_top_fraction": {},
        "compression": [],
        "denoising": [],
    }
    # share of explained entropy above the noise floor carried by the top C dims; without training
    # noise (sigma 0, no dequantisation) there is no floor and no share (None, printed "n/a")
    floor = 0.5 * math.log(2 * math.pi * math.e * noise_var) if noise_var > 0 else None
    excess = None if floor is None else (sorted_h.double() - floor).clamp_min(0)
    for C in core_sizes:
        report["entropy_top_fraction"][str(C)] = (None if excess is None else
                                                  float(excess[:C].sum() / excess.sum().clamp_min(1e-12)))
        rec = _batched(lambda xb: model.compress(xb, C), x_test, model=model, c=c_test)
        report["compression"].append({
            "C": C, "ratio": D / C, "psnr_eoflow": mean_psnr(rec, x_test, f"PSNR at C = {C}"),
            "psnr_pca": pca_psnr(x_test, C)})
    report["core_rule"] = []
    for sigma in DENOISE_SIGMAS:
        noisy = x_test + sigma * torch.randn_like(x_test)
        base = mean_psnr(noisy, x_test, "noisy PSNR")
        psnr_at = {"eoflow": lambda C: mean_psnr(_batched(lambda xb: model.denoise(xb, C), noisy, model=model,
                                                          c=c_test), x_test, f"denoised PSNR at C = {C}"),
                   "pca": lambda C: pca_psnr(noisy, C)}
        searched = {"eoflow": {}, "pca": {}}
        for C in core_sizes:
            if C == D:
                continue
            den, den_pca = psnr_at["eoflow"](C), psnr_at["pca"](C)
            searched["eoflow"][C] = den
            if den_pca is not None:
                searched["pca"][C] = den_pca
            report["denoising"].append({"sigma": sigma, "C": C, "psnr_noisy": base, "psnr_eoflow": den,
                                        "psnr_pca": den_pca, "gain_eoflow": den - base,
                                        "gain_pca": None if den_pca is None else den_pca - base})
        rule = {"sigma": sigma, "psnr_noisy": base}
        for name, auto in (("eoflow", model.core_above_noise(sigma)), ("pca", pca.core_above_noise(sigma))):
            best = max(searched[name], key=searched[name].get) if searched[name] else auto
            at_auto = searched[name][auto] if auto in searched[name] else psnr_at[name](auto)  # one pass per C
            rule.update({f"C_auto_{name}": auto, f"psnr_auto_{name}": at_auto, f"C_best_{name}": best,
                         f"psnr_best_{name}": searched[name][best] if best in searched[name] else at_auto})
        report["core_rule"].append(rule)
    from eoflow_fast.train.logging import jsonable
    (run_dir / "eval.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
    (run_dir / "eval.txt").write_text(format_table(report) + "\n")
    if plots:
        make_plots(model, run_dir, x_test, sorted_h, pca_h, core_sizes, c_test=c_test)
    return report


def format_table(report: dict) -> str:
    lines = [f"EOFlow evaluation (D = {report['dim']}){checkpoint_note(report.get('checkpoint'))}",
             f"  bits/dim: {report['bits_per_dim']:.3f} (dequantised), {report['bits_per_dim_noisy']:.3f} (with training noise)",
             f"  total entropy {report['total_entropy']:.2f} nats, MTC {report['mtc']:.2f} nats",
             "  compression:   C   D/C   PSNR EOFlow   PSNR PCA   top-C entropy share"]
    for row in report["compression"]:
        share = report["entropy_top_fraction"][str(row["C"])]
        lines.append(f"             {row['C']:5d} {row['ratio']:6.1f}   {format_db(row['psnr_eoflow'], 8)}  "
                     f"{format_db(row['psnr_pca'], 7)}   {'n/a' if share is None else format(share, '6.1%'):>6}")
    lines.append("  denoising: sigma     C   PSNR noisy   EOFlow (gain)        PCA (gain)")
    for row in report["denoising"]:
        lines.append(f"             {row['sigma']:5.2f} {row['C']:5d}   {row['psnr_noisy']:7.2f}   "
                     f"{row['psnr_eoflow']:6.2f} ({row['gain_eoflow']:+5.2f})   "
                     + ("   n/a (above the PCA rank)" if row["psnr_pca"] is None
                        else f"{row['psnr_pca']:6.2f} ({row['gain_pca']:+5.2f})"))
    lines.append("  core choice: sigma   EOFlow C_auto (PSNR)  best C (PSNR)   PCA C_auto (PSNR)  best C (PSNR)"
                 "   [C_auto: dims with H_i > 0.5 log(2 pi e sigma^2)]")
    for r in report.get("core_rule", []):
        lines.append(f"             {r['sigma']:5.2f}   {r['C_auto_eoflow']:6d} ({r['psnr_auto_eoflow']:6.2f})  "
                     f"{r['C_best_eoflow']:6d} ({r['psnr_best_eoflow']:6.2f})   {r['C_auto_pca']:6d} "
                     f"({r['psnr_auto_pca']:6.2f})  {r['C_best_pca']:6d} ({r['psnr_best_pca']:6.2f})")
    return "\n".join(lines)


def checkpoint_note(source: dict | None) -> str:
    """", step S (FILE, weights HHHHHHHHHHHH)" for a report's ``checkpoint``, "" when unknown."""
    if source is None:
        return ""
    file = f"{source['checkpoint']}, " if source.get("checkpoint") else ""
    return f", step {source['step']} ({file}weights {str(source['weights'])[:12]})"


def format_db(value: float, width: int = 7) -> str:
    """A PSNR for a table: f"{value:width.2f} dB", "exact" (right-aligned) for +inf, "n/a" for None."""
    if value is None:
        return f"{'n/a':>{width + 3}}"
    return f"{'exact':>{width + 3}}" if value == math.inf else f"{value:{width}.2f} dB"


def _grid(ax, images: torch.Tensor, title: str, row_labels: list[str] | None = None) -> None:
    """images (R, K, C, H, W) in [0, 1] -> one R x K mosaic, tiles separated by 1 grey pixel;
    ``row_labels`` (R strings) are written left of the rows."""
    images = torch.nn.functional.pad(images.clamp(0, 1), (1, 0, 1, 0), value=0.5)
    R, K, C, H, W = images.shape
    mosaic = images.permute(0, 3, 1, 4, 2).reshape(R * H, K * W, C).cpu().numpy()
    ax.imshow(mosaic[..., 0] if C == 1 else mosaic, cmap="gray" if C == 1 else None, vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([H * (r + 0.5) for r in range(R)], row_labels if row_labels is not None else [""] * R)
    ax.tick_params(left=False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def make_plots(model: EOFlow, run_dir: Path, x_test, sorted_h, pca_h, core_sizes, n_show: int = 8,
               c_test: torch.Tensor | None = None) -> None:
    """spectrum.png, and for image data reconstructions.png, detail_resampling.png, traversals.png
    (a conditional model is conditioned on each shown item's label, ``c_test``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sorted_h.numpy(), label="EOFlow H_i (sorted)")
    ax.plot(pca_h[:len(sorted_h)].numpy(), "--", label="PCA 0.5 log(2 pi e (lambda_i + noise var))")
    ax.set_xlabel("dimension rank")
    ax.set_ylabel("explained entropy (nats)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "spectrum.png", dpi=120)
    plt.close(fig)
    if len(model.input_shape) != 3:
        return
    x = x_test[:n_show]

    def cond(n):
        return model.conditioned(None if c_test is None else c_test[:n])
    with cond(n_show):
        rows = [x] + [model.compress(x, C) for C in core_sizes]
    fig, ax = plt.subplots(figsize=(n_show + 1, len(rows) * 1.1))
    _grid(ax, torch.stack(rows), "originals, then reconstructions from the top C dims",
          ["original"] + [f"C = {C}" for C in core_sizes])
    fig.savefig(run_dir / "reconstructions.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    C = core_sizes[len(core_sizes) // 2]
    with cond(6):
        z_core = model.encode_core(x[:6], C)
        samples = [model.decode(z_core, "zero")] + [model.decode(z_core, "sample") for _ in range(7)]
    fig, ax = plt.subplots(figsize=(8, 6))
    _grid(ax, torch.stack(samples, 1), f"detail resampling at C = {C}: zero detail, then 7 prior draws")
    fig.savefig(run_dir / "detail_resampling.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    with cond(1):  # one item's condition, broadcast over its traversal rows
        z, _ = model.encode(x[:1])
        values = torch.linspace(-2.5, 2.5, 9, device=z.device)
        rows, labels = [], []
        for rank, k in enumerate(model.latent_order[:8].tolist()):
            zk = z.repeat(len(values), 1)
            zk[:, k] = values
            rows.append(model.decode_full(zk))
            labels.append(f"z{k}: H = {float(sorted_h[rank]):.2f}")
    fig, ax = plt.subplots(figsize=(10, 8))
    _grid(ax, torch.stack(rows), "latent traversals of the top 8 dims (z_k from -2.5 to 2.5; H in nats)", labels)
    fig.savefig(run_dir / "traversals.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
