"""``eoflow-fast compress RUN_DIR --core C``: keep the C highest-entropy latents of an EOFlow run.

Encodes ``--n`` test items, keeps z_core = z[:, latent_order[:C]] (saved to ``--out``, default
``RUN_DIR/compressed_C<C>.pt``: a dict with ``z_core`` (n, C) and ``core_dims`` (C,)), decodes
g([z_core, 0]) and prints the PSNR and the compression ratio D/C; ``--grid`` saves originals over
reconstructions as a PNG. A reconstruction with NaN/inf values (a diverged model) is an error naming
the count of such items; nothing is saved. Exit status: 0 done, 1 unusable run folder or non-finite
reconstruction, 2 usage error.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from eoflow_fast.train.argtypes import device, int_at_least, out_file

from eoflow_fast.train.checkpoint import CheckpointError

from .common import UsageError, add_cpu_threads, add_json, apply_cpu_threads, check_run_folder, print_summary
from .common import fail, run_folder_error


def _core_size(text: str):
    """--core value of denoise: an integer >= 1, or "auto" (kept as the string)."""
    if text == "auto":
        return text
    try:
        return int_at_least(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {text!r}") from None


def add_common_args(parser: argparse.ArgumentParser, auto_help: str | None = None) -> None:
    """RUN_DIR, --core, --n, --checkpoint, --device, --cpu-threads, --json (compress, denoise); with
    ``auto_help`` --core also takes "auto", described by that text."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="an 'eoflow-fast train eoflow' run folder")
    parser.add_argument("--core", type=int_at_least(1) if auto_help is None else _core_size, required=True,
                        metavar="C", help="number of core dims kept (1..D" + (f", or 'auto': {auto_help}"
                                                                            if auto_help else "") + "; required)")
    parser.add_argument("--n", type=int_at_least(1), default=64, help="test items to process")
    add_run_args(parser)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --device, --cpu-threads, --json: how an EOFlow run folder is opened."""
    parser.add_argument("--checkpoint", metavar="FILE", help="checkpoint (default: the latest in RUN_DIR)")
    parser.add_argument("--device", type=device, default="cpu", help="auto | cpu | cuda | cuda:N")
    add_cpu_threads(parser)
    add_json(parser)


def open_run(args):
    """``(model, config, test set)`` of ``args.run_dir`` after ``--cpu-threads`` is applied. A path
    that is no run folder, or a run of another family, is a :class:`UsageError` (exit 2); a run
    folder that cannot be opened (damaged config.json, no or a corrupt checkpoint, settings or data
    the model cannot be rebuilt from) exits 1 with one line saying which."""
    from eoflow_fast.flows.family import open_eoflow_run
    from eoflow_fast.train import engine

    run_dir = check_run_folder(args.run_dir)
    check_out_not_run_file(getattr(args, "out", None), run_dir, args.checkpoint)
    apply_cpu_threads(args.cpu_threads)
    try:
        family = engine.read_config(run_dir).get("model")
    except Exception as exc:  # a damaged config.json (CheckpointError)
        run_folder_error(args.parser.prog, run_dir, exc)
    if family != "eoflow":
        raise UsageError(f"argument RUN_DIR: {run_dir} is a {family!r} run, not an 'eoflow' run")
    try:
        return open_eoflow_run(run_dir, args.checkpoint, args.device)
    except (CheckpointError, ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        run_folder_error(args.parser.prog, run_dir, exc)


RUN_FILES = ("config.json", "metrics.jsonl", "metrics.json", "eval.json", "eval.jsonl", "eval.txt", "entropy.json")


def check_out_not_run_file(out, run_dir, checkpoint=None) -> None:
    """:class:`UsageError` when ``--out`` names a file the run itself holds (``RUN_FILES``, a
    ``ckpt-*.pt``, or the ``--checkpoint`` being read): writing there would destroy the run."""
    if out is None:
        return
    target = Path(out).resolve()
    own = target.parent == run_dir.resolve() and (target.name in RUN_FILES or
                                                   (target.name.startswith("ckpt-") and target.suffix == ".pt"))
    if own or (checkpoint is not None and target == Path(checkpoint).resolve()):
        raise UsageError(f"argument --out: {out} is a file of the run {run_dir} (its "
                         f"{'checkpoint' if target.suffix == '.pt' else target.name}); writing there would "
                         f"overwrite it. Choose another path")


def load(parser: argparse.ArgumentParser, args):
    """(model, test items (n, ...)) or an exit: 1 for an unusable run, 2 (parser.error) for bad flags."""
    model, _, test_set = open_run(args)
    if args.core != "auto" and not 1 <= args.core <= model.dim:
        parser.error(f"argument --core: expected 1 <= C <= D = {model.dim}, got {args.core}")
    n = min(args.n, len(test_set))
    items = [test_set[i] for i in range(n)]
    x = torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])
    model.condition_on_items(items)  # a class-conditional run: each item with its own label
    return model, x.to(next(model.parameters()).device)


def save_grid(path: Path, rows: list[torch.Tensor], title: str, row_labels: list[str] | None = None) -> None:
    """Rows of images (k, C, H, W) stacked into one PNG (only for image data), each row labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eoflow_fast.flows.evaluation import _grid

    fig, ax = plt.subplots(figsize=(rows[0].shape[0] + 1, 1.2 * len(rows)))
    _grid(ax, torch.stack(rows), title, row_labels)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def run(args) -> int:
    from eoflow_fast.flows.eoflow import NonFiniteOutputError, mean_psnr

    parser = args.parser
    model, x = load(parser, args)
    with torch.no_grad():
        z_core = model.encode_core(x, args.core)
        rec = model.decode(z_core)
    try:
        score = mean_psnr(rec, x, f"compress: PSNR at C = {args.core}")
    except NonFiniteOutputError as exc:  # before: "psnr (dB)  nan" in the table, and a file of NaN codes saved
        fail(parser.prog, exc, 1)
    out = Path(args.out) if args.out else Path(args.run_dir) / f"compressed_C{args.core}.pt"
    torch.save({"z_core": z_core.cpu(), "core_dims": model.latent_order[:args.core].cpu()}, out)
    result = {"C": args.core, "D": model.dim, "ratio": model.dim / args.core, "n": x.shape[0],
              "psnr": score, "saved": str(out)}
    if args.grid and len(model.input_shape) == 3:
        grid = out.with_suffix(".png")
        save_grid(grid, [x[:16], rec[:16]], f"originals / reconstructions from C = {args.core}",
                  ["original", f"C = {args.core}"])
        result["grid"] = str(grid)
    print_summary(args, f"compress {args.run_dir}: C = {args.core} of D = {model.dim} dims "
                        f"(ratio {result['ratio']:.3g}) on {result['n']} test items",
                  result, {"psnr (dB)": result["psnr"]}, [result["saved"], *([result["grid"]] if "grid" in result else [])])
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("compress", help="keep the top-C entropy dims of an EOFlow run",
                                   description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--out", metavar="FILE", type=out_file, help="where to save z_core (default RUN_DIR/compressed_C<C>.pt)")
    parser.add_argument("--grid", action="store_true", help="also save originals over reconstructions as PNG")
    parser.set_defaults(func=run, parser=parser)
