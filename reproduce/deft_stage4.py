"""DEFT stage 4 on dSprites: why MIG falls there, by branching one stage-3 state four ways, and
whether the group size K changes it.

The finding (reproduce/deft_stages.py): MIG rises through stage 3 but falls at stage 4 (beta 4)
in 6 of 8 CPU-shortened runs, with shape and orientation seemingly merged into one latent. To
separate the causes, every base run is trained through stage 3 once and stage 4 is then branched
from the same checkpoint (``--resume RUN --from-checkpoint ckpt-3S --branch ...``), so the variants
differ in stage 4 only:

- ``default``: Table 2's stage-4 beta 4, gamma mode lr (Algorithm 1);
- ``beta12``: stage 4 at beta 12 (stage 3's): does lowering beta to 4 cause the fall?
- ``grad``: gamma as gradient scaling (the authors' code) instead of per-encoder learning rates;
- ``frozen``: deft_gamma 0, the earlier encoders do not move at all in stage 4.

Per variant and seed: MIG, MIG per factor and the NMI matrix at the end of stage 3 (shared) and of
stage 4, whether shape and orientation share their top latent ("merged"), and how much the
stage-4 group (the last K latents) takes up each factor next to the earlier groups
(``group_uptake``): MIG is a gap between a factor's two best latents, so a new latent that takes up
a factor an earlier latent already holds closes that gap.

Group size: K changes the model from the start, so it needs full runs (``--latents-per-group K
--steps 4S``, checkpoints at every stage end; G = 4, the preset's betas), evaluated at the end of
stages 3 and 4 like the branches. K = 3 is the preset; its numbers are the branch study's stage-3
state and ``default`` branch, a run resumed at 3S (the checkpoint carries the RNG and data state; at
the toy budget its weights at 4S were bit-identical to an uninterrupted run's).

What K did at the CPU budget (1,500 steps per stage, batch 64, seeds 0 and 1; observations, not
rates): MIG fell at stage 4 in 2/2 runs at K = 1 (-0.041, -0.014), 1/2 at K = 2 (-0.016, +0.003)
and 1/2 at K = 3 (+0.007, -0.048), so no K tried removes the fall, and a single new latent (K = 1)
is enough for it. The factor is not always shape: in each of the 4 falls, the factor the stage-4
group took up most (posY, posX, posX at K = 1, 1, 2; shape at K = 3; NMI 0.06-0.16 next to an earlier
latent's 0.19-0.32) is the factor whose MIG fell most. Shape and scale share one latent and
orientation is encoded nowhere (NMI <= 0.012) at every K. Numbers: the second row of
bench/results/repro_deft_stage4_cpu.md, per K and seed in its ``details.group_size``.

The steps-per-stage question is answered from the existing full stage runs at 1,500 / 3,000 /
6,000 steps per stage (reproduce/deft_stages.py); the paper's sample budget needs a GPU (``GPU``).

Resuming: a run whose last checkpoint exists is reused, an unfinished one is trained again from
scratch; evaluations are cached next to their checkpoint. Entries already in the results JSON
(same steps per stage, batch and evaluation sizes) are reused without their run folders, so the
committed evaluations stay valid and only what is missing is trained; ``--no-train`` rebuilds the
rows from that JSON alone.

    python -m reproduce.deft_stage4 --budget cpu     # 2 seeds x (4,500 + 4 x 1,500 + 2 x 6,000) steps, one thread
    python -m reproduce.deft_stage4 --no-train       # the rows again from the committed JSON's evaluations
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .deft_stages import load_runs
from .rows import parse_budget, previous_details, row, run_cli, write

BUDGETS = {"toy": {"stage_steps": 4, "seeds": [0], "batch_size": 8, "group_sizes": [1],
                   "eval": ["--num-train", "200", "--num-test", "100"]},
           "cpu": {"stage_steps": 1500, "seeds": [0, 1], "batch_size": 64, "group_sizes": [1, 2], "eval": []}}
SAME_RUNS = ("stage_steps", "batch_size", "eval")  # budget keys that must match for a JSON entry to be reused
VARIANTS = {"default": [], "beta12": ["--branch", "betas=70,30,12,12"], "grad": ["--branch", "gamma_mode=grad"],
            "frozen": ["--branch", "deft_gamma=0"]}
FACTORS = ("shape", "scale", "orientation", "posX", "posY")
K = 3  # latents per group of the dSprites preset (Table 2: G 4 x K 3)
ENCODED = 0.05  # NMI below which a factor counts as encoded nowhere [INFERRED]
GPU = ("eoflow-fast train deft --preset dsprites --batch-size 256 --lr 5e-4 --stage-steps 20160 --steps 60480 --seed S, "
       "then the four --branch variants of reproduce/deft_stage4.py with --steps 80640; per K: "
       "eoflow-fast train deft --preset dsprites --latents-per-group K --batch-size 256 --lr 5e-4 --stage-steps 20160 "
       "--steps 80640 --ckpt-every 20160 --seed S")


def train_args(b: dict, seed: int, run_dir: Path, stages: int, extra: tuple = ()) -> list[str]:
    """A DEFT dSprites run through ``stages`` stages with a checkpoint at every stage end."""
    s = b["stage_steps"]
    return ["train", "deft", "--preset", "dsprites", "--stage-steps", str(s), "--steps", str(stages * s),
            "--batch-size", str(b["batch_size"]), "--lr", "5e-4", "--ckpt-every", str(s), "--eval-every", "0",
            "--plot-every", "0", "--seed", str(seed), "--device", "cpu", "--cpu-threads", "1", "--no-progress",
            "--run-dir", str(run_dir), *extra]


def group_size_args(b: dict, k: int, seed: int, run_dir: Path) -> list[str]:
    return train_args(b, seed, run_dir, 4, ("--latents-per-group", str(k)))


def train_once(args: list[str], run_dir: Path, last: Path) -> None:
    """Runs ``eoflow-fast ARGS`` unless its last checkpoint ``last`` exists; an unfinished run
    folder (state unknown) is removed and trained again."""
    if last.exists():
        return
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_cli(args)


def evaluate(run_dir: Path, ckpt: Path, b: dict) -> dict:
    """MIG, MIG per factor and the NMI matrix (latents x factors) of one checkpoint; cached next to it."""
    cache = run_dir / f"stage4_eval_{ckpt.stem}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    out = json.loads(run_cli(["eval", str(run_dir), "--checkpoint", str(ckpt), "--metrics", "mig,nmi", "--json",
                              "--no-progress", "--cpu-threads", "1", *b["eval"]]))
    result = {"mig": out["mig"]["mig"], "mig_per_factor": out["mig"]["mig_per_factor"],
              "nmi_matrix": out["nmi"]["nmi_matrix"]}
    cache.write_text(json.dumps(result))
    return result


def merged(nmi: list, floor: float = ENCODED) -> dict:
    """Top latent of shape and of orientation by NMI, and whether it is the same latent; a factor
    whose largest NMI is below ``floor`` is encoded nowhere and merges with nothing."""
    m = np.asarray(nmi)
    top = {f: int(np.argmax(m[:, FACTORS.index(f)])) for f in ("shape", "orientation")}
    encoded = {f: bool(m[:, FACTORS.index(f)].max() >= floor) for f in top}
    return {"top_latent": top, "encoded": encoded, "merged": all(encoded.values()) and top["shape"] == top["orientation"]}


def group_uptake(nmi: list, k: int = K) -> dict:
    """Per factor: the largest NMI among the stage-4 group's latents (the last ``k`` rows) and among
    the earlier groups' latents. MIG is the gap between a factor's two most informative latents, so a
    new latent that takes up a factor the earlier groups already hold shrinks that factor's MIG."""
    m = np.asarray(nmi)
    return {f: {"new": float(m[-k:, j].max()), "earlier": float(m[:-k, j].max())} for j, f in enumerate(FACTORS)}


def run_seed(b: dict, seed: int, root: Path) -> dict:
    """The branch study of one seed: the shared stage-3 evaluation and one stage-4 evaluation per variant."""
    s = b["stage_steps"]
    base = root / f"base_s{seed}"
    stage3 = base / f"ckpt-{3 * s:08d}.pt"
    train_once(train_args(b, seed, base, 3), base, stage3)
    out = {"stage3": evaluate(base, stage3, b)}
    for name, extra in VARIANTS.items():
        run_dir = root / f"{name}_s{seed}"
        final = run_dir / f"ckpt-{4 * s:08d}.pt"
        if not final.exists():
            if run_dir.exists():
                shutil.rmtree(run_dir)
            shutil.copytree(base, run_dir, ignore=shutil.ignore_patterns("stage4_eval_*"))
            run_cli(["train", "deft", "--resume", str(run_dir), "--from-checkpoint", stage3.name, "--steps", str(4 * s),
                     "--no-progress", "--cpu-threads", "1", *extra])
        out[name] = evaluate(run_dir, final, b)
    return out


def run_group_size(b: dict, k: int, seed: int, root: Path) -> dict:
    """One full run with K latents per group: evaluations at the end of stages 3 and 4."""
    s = b["stage_steps"]
    run_dir = root / f"k{k}_s{seed}"
    final = run_dir / f"ckpt-{4 * s:08d}.pt"
    train_once(group_size_args(b, k, seed, run_dir), run_dir, final)
    return {"stage3": evaluate(run_dir, run_dir / f"ckpt-{3 * s:08d}.pt", b), "stage4": evaluate(run_dir, final, b)}


def group_size_summary(runs: dict, k: int) -> dict:
    """Per seed of one K (``runs``: seed -> {"stage3", "stage4"} evaluations): stage-3 and stage-4 MIG,
    the stage-4 change (all and shape's MIG), the stage-4 group's uptake of shape at the end of stage 4
    (``group_uptake`` with this k), the factor it took up most (its NMI there, the earlier groups',
    and that factor's MIG change) and the factor whose MIG fell most."""
    out = {}
    for seed, r in runs.items():
        a, z = r["stage3"], r["stage4"]
        up = group_uptake(z["nmi_matrix"], k)
        delta = [y - x for x, y in zip(a["mig_per_factor"], z["mig_per_factor"])]
        top = max(FACTORS, key=lambda f: up[f]["new"])
        out[seed] = {"stage3_mig": a["mig"], "stage4_mig": z["mig"], "change": z["mig"] - a["mig"],
                     "shape_change": delta[0], "shape_uptake": up["shape"],
                     "top_uptake": {"factor": top, **up[top], "mig_change": delta[FACTORS.index(top)]},
                     "largest_fall": {"factor": FACTORS[int(np.argmin(delta))], "mig_change": min(delta)}}
    return out


def budget_breakdown() -> list[dict]:
    """Stage-4 MIG change of the committed full stage runs, per steps per stage."""
    by = {}
    for r in load_runs():
        by.setdefault(r["stage_steps"], []).append(r["mig"][3] - r["mig"][2])
    return [{"stage_steps": k, "runs": len(v), "fell": sum(d < 0 for d in v), "mean_change": float(np.mean(v))}
            for k, v in sorted(by.items())]


def previous(results_dir: Path, budget: str, b: dict) -> dict:
    """The details of an earlier run of this script at this budget (its JSON), or {} when there is
    none or it was run with other steps per stage, batch or evaluation sizes."""
    return previous_details(f"deft_stage4_{budget}", results_dir, b, SAME_RUNS)


def collect(b: dict, root: Path, prev: dict, no_train: bool) -> tuple[dict, dict]:
    """The branch study per seed and the K study per K and seed: from ``prev`` where it holds the
    entry, else trained and evaluated (with ``no_train``: a missing entry is an error)."""
    def reuse(entry, name: str, compute):
        if entry is not None:
            return entry
        if no_train:
            raise SystemExit(f"--no-train: the results JSON has no {name} at this budget; run without --no-train first")
        return compute()

    old_seeds, old_sizes = prev.get("seeds", {}), prev.get("group_size_runs", {})
    seeds = {str(s): reuse(old_seeds.get(str(s)), f"seed {s}", lambda: run_seed(b, s, root)) for s in b["seeds"]}
    sizes = {str(k): {str(s): reuse(old_sizes.get(str(k), {}).get(str(s)), f"K={k} seed {s}",
                                    lambda: run_group_size(b, k, s, root)) for s in b["seeds"]}
             for k in b["group_sizes"]}
    return seeds, sizes


def group_size_row(sizes: dict, seeds: dict, b: dict, command: str) -> tuple[dict, dict]:
    """The K row and its per-K summary; K = 3 from the branch study (stage 3 and ``default``)."""
    runs = {**{int(k): v for k, v in sizes.items()},
            K: {s: {"stage3": seeds[s]["stage3"], "stage4": seeds[s]["default"]} for s in seeds}}
    summary = {k: group_size_summary(runs[k], k) for k in sorted(runs)}

    def per_k(k):
        new = f"latent {3 * k}" if k == 1 else f"latents {3 * k}-{4 * k - 1}"
        return f"K={k} (new group: {new}): " + "; ".join(
            f"seed {s} MIG {r['stage3_mig']:.3f}->{r['stage4_mig']:.3f} ({r['change']:+.3f}), NMI with shape "
            f"{r['shape_uptake']['new']:.2f} new vs {r['shape_uptake']['earlier']:.2f} earlier, shape MIG "
            f"{r['shape_change']:+.3f}; most taken up {r['top_uptake']['factor']} {r['top_uptake']['new']:.2f} vs "
            f"{r['top_uptake']['earlier']:.2f}, its MIG {r['top_uptake']['mig_change']:+.3f} (largest fall: "
            f"{r['largest_fall']['factor']})" for s, r in summary[k].items())

    fell = {k: sum(r["change"] < 0 for r in summary[k].values()) for k in summary}
    falls = [r for k in summary for r in summary[k].values() if r["change"] < 0]
    tracked = sum(r["top_uptake"]["factor"] == r["largest_fall"]["factor"] for r in falls)
    ours = (f"stage 3 -> 4 per K (G = 4, betas 70,30,12,4; K = "
            f"{', '.join(str(k) for k in sorted(runs) if k != K)} full runs, K = {K} the branch study's default): "
            + ". ".join(per_k(k) for k in summary)
            + ". MIG fell in " + ", ".join(f"{fell[k]}/{len(summary[k])} at K={k}" for k in summary)
            + f"; in {tracked}/{len(falls)} of the falls the factor the new group took up most is the one whose "
            f"MIG fell most ({b['stage_steps']} steps per stage, batch {b['batch_size']}; {len(seeds)} seed(s): "
            "observations, not rates)")
    verdict = "partly" if any(fell.values()) else "reproduced"
    return (row("DEFT dSprites stage 4: does the group size K change the MIG fall",
                "MIG improves in every stage with G 4 x K 3; K is 'not less than the size of the newly learned "
                "factors' (Table 2; K not varied in the paper)", ours, command, "cpu", verdict, GPU),
            {str(k): v for k, v in summary.items()})


def main(argv=None) -> None:
    budget, b, root, results_dir, args = parse_budget(__doc__, BUDGETS, "runs/repro_deft_stage4", argv, no_train=True)
    prev = previous(results_dir, budget, b)
    if args.no_train and not prev:
        raise SystemExit(f"--no-train: no repro_deft_stage4_{budget}.json at this budget in {results_dir}; "
                         "run without --no-train first")
    seeds, sizes = collect(b, root, prev, args.no_train)
    for per_seed in seeds.values():
        for result in per_seed.values():
            result.update(merged(result["nmi_matrix"]))
    change = {v: [seeds[s][v]["mig"] - seeds[s]["stage3"]["mig"] for s in seeds] for v in VARIANTS}
    merges = {v: sum(seeds[s][v]["merged"] for s in seeds) for v in ["stage3", *VARIANTS]}
    per_factor = {v: {f: [seeds[s][v]["mig_per_factor"][i] - seeds[s]["stage3"]["mig_per_factor"][i] for s in seeds]
                      for i, f in enumerate(FACTORS)} for v in VARIANTS}
    fmt = lambda xs: "/".join(f"{x:+.3f}" for x in xs)  # noqa: E731
    n = len(seeds)
    ours = (f"MIG change in stage 4 from the same stage-3 state (seeds {', '.join(seeds)}; stage 3 MIG "
            + "/".join(f"{seeds[s]['stage3']['mig']:.3f}" for s in seeds) + "): "
            + "; ".join(f"{v} {fmt(change[v])} (shape {fmt(per_factor[v]['shape'])}, orientation "
                        f"{fmt(per_factor[v]['orientation'])}; shape and orientation share a top latent in "
                        f"{merges[v]}/{n})" for v in VARIANTS)
            + f"; merged already at stage 3 in {merges['stage3']}/{n}; by steps per stage (full runs): "
            + "; ".join(f"{x['stage_steps']}: fell in {x['fell']}/{x['runs']}, mean {x['mean_change']:+.3f}"
                        for x in budget_breakdown())
            + f" ({b['stage_steps']} steps per stage, batch {b['batch_size']})")
    uptake = {v: {s: group_uptake(seeds[s][v]["nmi_matrix"]) for s in seeds} for v in VARIANTS}

    def took(s):
        new = "/".join(f"{uptake[v][s]['shape']['new']:.2f}" for v in VARIANTS)
        orient = max(uptake[v][s]["orientation"]["new"] for v in VARIANTS)
        return f"seed {s}: {new} (earlier groups {uptake['default'][s]['shape']['earlier']:.2f}; orientation <= {orient:.2f})"

    ours += (f"; largest NMI with shape of a stage-4 latent ({3 * K}-{4 * K - 1}), variants {'/'.join(VARIANTS)}: "
             + "; ".join(took(s) for s in seeds))
    worst = min(VARIANTS, key=lambda v: float(np.mean(change[v])))
    command = f"python -m reproduce.deft_stage4 --budget {budget}" + (" --no-train" if args.no_train else "")
    k_row, k_summary = group_size_row(sizes, seeds, b, command)
    rows = [row("DEFT dSprites stage 4 (beta 4): what the MIG fall comes from (branching study)",
                "MIG improves in every stage; stage betas 70, 30, 12, 4 (§5.4, Fig. 12; Table 2)",
                ours + f"; largest mean fall: {worst}", command,
                "cpu", "partly" if float(np.mean(change["default"])) < 0 else "reproduced", GPU), k_row]
    details = {"budget": b, "variants": {k: " ".join(v) for k, v in VARIANTS.items()}, "seeds": seeds,
               "mig_change": change, "mig_change_per_factor": per_factor, "merged": merges, "group_uptake": uptake,
               "by_stage_steps": budget_breakdown(), "group_size_runs": sizes, "group_size": k_summary,
               "commands": {"base": "eoflow-fast " + " ".join(train_args(b, 0, root / "base_s0", 3)),
                            "K": "eoflow-fast " + " ".join(group_size_args(b, 1, 0, root / "k1_s0"))}}
    print(write(f"deft_stage4_{budget}", rows, details, results_dir))


if __name__ == "__main__":
    main()
