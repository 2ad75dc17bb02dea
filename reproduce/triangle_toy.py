"""DEFT Fig. 14: the correlated triangle ("correlative but separable"), beta-TCVAE against DEFT.

Paper (DEFT, arXiv 2102.03986, §5.4, Fig. 14): posX and posY independent, the orientation points
at the canvas centre (a function of the position). beta-TCVAE (beta = 6) and DEFT (K = 2, G = 2)
are trained for 10,000 steps, 10 times each; all methods disentangle posX and posY, but only DEFT
puts the orientation in a latent of its own (I(z_4; orientation) high, I(z_4; posX), I(z_4; posY)
low; NMI matrices in Fig. 14 b).

Ours, per seed (``--data triangle``, batch 64, lr 5e-4, Bernoulli decoder, 4 latents each):
- ``eoflow-fast train vae --model betatcvae --beta 6 --latent-dim 4``;
- ``eoflow-fast train deft --groups 2 --latents-per-group 2 --betas 20 2 --stage-steps T/2`` (the
  paper gives no betas for the toy; [20, 2] is the authors' ``grid_search/correlation.py``,
  vae_deft.md §B.2 [INFERRED]; 4 latents for beta-TCVAE too, so both have the same room [INFERRED]).
The NMI matrix NMI(z_i; c_j) (20-bin MI over H(c_j), 10,000 points) comes from ``eoflow-fast eval``.
A run "puts orientation in its own latent" [INFERRED rule] when some latent that is the top latent
of neither posX nor posY has NMI(z; orientation) > 0.1 and above its NMI with posX and with posY.
"reproduced" when DEFT does so in more than half of its runs and beta-TCVAE in fewer than half.

    python -m reproduce.triangle_toy --budget cpu    # 3 seeds x 3,000 steps each (~40 min loaded)
    GPU, paper budget: --budget paper (10 seeds x 10,000 steps; add --device cuda to the commands)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .rows import parse_budget, row, run_cli, write

BUDGETS = {"toy": {"steps": 20, "seeds": [0], "device": "cpu"},
           "cpu": {"steps": 3000, "seeds": [0, 1, 2], "device": "cpu"},
           "paper": {"steps": 10_000, "seeds": list(range(10)), "device": "cuda"}}
FACTORS = ("posX", "posY", "orientation")
THRESHOLD = 0.1
METHODS = ("betatcvae", "deft")
COMMON = ["--data", "triangle", "--batch-size", "64", "--lr", "5e-4", "--eval-every", "0", "--plot-every", "0"]
GPU = ("python -m reproduce.triangle_toy --budget paper  (beta-TCVAE beta 6 and DEFT K 2 G 2, 10 seeds x 10,000 "
       "steps; runs on cuda)")


def train_args(method: str, steps: int, seed: int, run_dir: Path, device: str) -> list[str]:
    base = ["--steps", str(steps), "--seed", str(seed), "--run-dir", str(run_dir), "--device", device, *COMMON]
    if device == "cpu":
        base += ["--cpu-threads", "1"]
    if method == "betatcvae":
        return ["train", "vae", "--model", "betatcvae", "--beta", "6", "--latent-dim", "4", *base]
    return ["train", "deft", "--preset", "dsprites", "--groups", "2", "--latents-per-group", "2", "--betas", "20", "2",
            "--stage-steps", str(max(1, steps // 2)), *base]


def nmi_matrix(run_dir: Path, steps: int) -> np.ndarray:
    """NMI(z_i; c_j) (d, 3) of the finished run (``eoflow-fast eval RUN --metrics nmi``)."""
    out = run_cli(["eval", str(run_dir), "--metrics", "nmi", "--cpu-threads", "1", "--json", "--no-progress"])
    return np.asarray(json.loads(out)["nmi"]["nmi_matrix"], dtype=float)


def run(method: str, steps: int, seed: int, run_dir: Path, device: str, train: bool = True) -> np.ndarray | None:
    done = run_dir / "nmi.json"
    if done.exists():
        return np.asarray(json.loads(done.read_text())["nmi_matrix"])
    if not train:
        return None
    final = run_dir / f"ckpt-{steps:08d}.pt"
    if run_dir.exists() and not final.exists():
        raise SystemExit(f"{run_dir} exists without {final.name} (an unfinished run); remove it or give a fresh --run-root")
    if not final.exists():
        run_cli(train_args(method, steps, seed, run_dir, device))
    m = nmi_matrix(run_dir, steps)
    done.write_text(json.dumps({"nmi_matrix": m.tolist()}))
    return m


def own_orientation_latent(m: np.ndarray, threshold: float = THRESHOLD) -> int | None:
    """The latent holding orientation on its own (see the module docstring), or None."""
    px, py, orient = 0, 1, 2
    taken = {int(np.argmax(m[:, px])), int(np.argmax(m[:, py]))}
    best = None
    for k in range(m.shape[0]):
        if k in taken or m[k, orient] <= threshold or m[k, orient] <= max(m[k, px], m[k, py]):
            continue
        if best is None or m[k, orient] > m[best, orient]:
            best = k
    return best


def plot(matrices: dict, path: Path, title: str) -> None:
    """One NMI heat map per run: rows beta-TCVAE / DEFT, columns seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(v) for v in matrices.values())
    fig, axes = plt.subplots(len(matrices), cols, figsize=(1.9 * cols + 0.6, 2.4 * len(matrices)), squeeze=False)
    for r, (method, runs) in enumerate(matrices.items()):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(runs) or runs[c][1] is None:
                ax.set_axis_off()
                continue
            seed, m = runs[c]
            im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="w" if m[i, j] < 0.5 else "k")
            own = own_orientation_latent(m)
            ax.set_title(f"{method} s{seed}" + (f": z{own} orient." if own is not None else ""), fontsize=7)
            ax.set_xticks(range(3), ["X", "Y", "or."], fontsize=6)
            ax.set_yticks(range(m.shape[0]), [f"z{i}" for i in range(m.shape[0])], fontsize=6)
    fig.colorbar(im, ax=axes, shrink=0.6)
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    budget, b, root, results_dir, args = parse_budget(__doc__, BUDGETS, "runs/repro_triangle", argv, no_train=True)
    matrices = {m: [(s, run(m, b["steps"], s, root / f"{m}_s{s}", b["device"], not args.no_train)) for s in b["seeds"]]
                for m in METHODS}
    own = {m: [own_orientation_latent(x) if x is not None else "not run" for _, x in runs] for m, runs in matrices.items()}
    ran = {m: [o for o in v if o != "not run"] for m, v in own.items()}
    hits = {m: sum(o is not None for o in v) for m, v in ran.items()}
    cmd = f"python -m reproduce.triangle_toy --budget {budget}" + (" --no-train" if args.no_train else "")
    top = {m: [float(max(x[:, 2])) for _, x in runs if x is not None] for m, runs in matrices.items()}
    fmt = lambda m: (f"{hits[m]}/{len(ran[m])} runs (max NMI(z; orientation) per run: "  # noqa: E731
                     f"{', '.join(f'{v:.2f}' for v in top[m])})")
    if not all(ran.values()):
        verdict = "not run"
    elif hits["deft"] * 2 > len(ran["deft"]) and hits["betatcvae"] * 2 < len(ran["betatcvae"]):
        verdict = "reproduced"
    elif hits["deft"] > hits["betatcvae"]:
        verdict = "partly"
    else:
        verdict = "not reproduced"
    rows = [row("DEFT triangle toy: only DEFT puts orientation in its own latent (Fig. 14)",
                "only DEFT (K 2, G 2) isolates orientation; beta-TCVAE (beta 6) does not (§5.4, Fig. 14 b; 10 runs x 10k steps)",
                f"orientation in its own latent: DEFT {fmt('deft')}; beta-TCVAE {fmt('betatcvae')}; "
                f"{len(b['seeds'])} seeds x {b['steps']} steps", cmd, "cpu" if b["device"] == "cpu" else "gpu", verdict, GPU)]
    if any(x is not None for runs in matrices.values() for _, x in runs):
        plot(matrices, results_dir / f"repro_triangle_{budget}.png",
             f"NMI(z_i; c_j) on the triangle toy, {b['steps']} steps")
    details = {"budget": b, "own_orientation_latent": own,
               "nmi_matrices": {m: {str(s): (None if x is None else x.tolist()) for s, x in runs} for m, runs in matrices.items()},
               "commands": {m: "eoflow-fast " + " ".join(train_args(m, b["steps"], 0, root / f"{m}_s0", b["device"]))
                            for m in METHODS}}
    print(write(f"triangle_{budget}", rows, details, results_dir))


if __name__ == "__main__":
    main()
