"""``eoflow-fast denoise RUN_DIR --core C|auto --sigma S``: denoise noisy test items with an EOFlow run.

x_noisy = x + S * eps; encode, keep the top C dims, zero the detail, decode (spec §5.3). Prints the
PSNR of the noisy and the denoised items against the clean ones and the gain; ``--grid`` saves
clean / noisy / denoised rows as ``RUN_DIR/denoised_C<C>_s<S>.png``. ``--core auto`` keeps the dims
whose explained entropy H_i lies above the floor 0.5 log(2 pi e S^2) that the noise sets
(``EOFlow.core_above_noise``) and reports it next to the best C of a search over the default core
sizes (``C_best``, ``psnr_best``) on the same items.
A denoised item with NaN/inf values (a diverged model) is an error naming the count of such items.
Exit status: 0 done, 1 unusable run folder or non-finite output, 2 usage error.
"""
from __future__ import annotations

from pathlib import Path

import torch

from eoflow_fast.train.argtypes import float_in, int_at_least

from .common import fail, print_summary
from .compress import add_common_args, load, save_grid


def run(args) -> int:
    from eoflow_fast.flows.eoflow import NonFiniteOutputError, mean_psnr, noise_entropy_floor
    from eoflow_fast.flows.evaluation import default_core_sizes

    parser = args.parser
    model, x = load(parser, args)
    gen = torch.Generator().manual_seed(args.seed)
    noisy = x + args.sigma * torch.randn(x.shape, generator=gen).to(x)
    auto = args.core == "auto"
    core = model.core_above_noise(args.sigma) if auto else args.core
    try:
        with torch.no_grad():
            den = model.denoise(noisy, core)
            base, out = mean_psnr(noisy, x, "denoise: noisy PSNR"), mean_psnr(den, x, f"denoise: PSNR at C = {core}")
            result = {"C": core, "sigma": args.sigma, "n": x.shape[0], "psnr_noisy": base, "psnr_denoised": out,
                      "gain_db": out - base}
            if auto:
                searched = {C: mean_psnr(model.denoise(noisy, C), x, f"denoise: PSNR at C = {C}")
                            for C in default_core_sizes(model.dim)}
                best = max(searched, key=searched.get)
                result.update({"C_rule": "dims with explained entropy > 0.5 log(2 pi e sigma^2)",
                               "entropy_floor": noise_entropy_floor(args.sigma), "C_best": best,
                               "psnr_best": searched[best]})
    except NonFiniteOutputError as exc:  # before: "psnr denoised (dB)  nan" in the table
        fail(parser.prog, exc, 1)
    if args.grid and len(model.input_shape) == 3:
        path = Path(args.run_dir) / f"denoised_C{core}_s{args.sigma:g}.png"
        save_grid(path, [x[:16], noisy[:16], den[:16]], f"clean / noisy (sigma {args.sigma:g}) / denoised (C = {core})",
                  ["clean", f"sigma = {args.sigma:g}", f"C = {core}"])
        result["grid"] = str(path)
    chosen = f"C = {core}" + (f" (auto: H_i above the noise floor; best searched C = {result['C_best']})" if auto else "")
    headline = {"psnr noisy (dB)": base, "psnr denoised (dB)": out, "gain (dB)": out - base}
    if auto:
        headline[f"psnr at best C = {result['C_best']} (dB)"] = result["psnr_best"]
    print_summary(args, f"denoise {args.run_dir}: {chosen}, sigma = {args.sigma:g}, {result['n']} test items",
                  result, headline,
                  [result["grid"]] if "grid" in result else [])
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("denoise", help="denoise with the top-C dims of an EOFlow run",
                                   description=__doc__.split("\n\n")[0])
    add_common_args(parser, "the dims whose explained entropy exceeds the noise floor 0.5 log(2 pi e sigma^2)")
    parser.add_argument("--sigma", type=float_in(0.0, low_open=True), default=0.1, help="std of the added Gaussian noise")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="noise seed")
    parser.add_argument("--grid", action="store_true", help="also save clean / noisy / denoised rows as PNG")
    parser.set_defaults(func=run, parser=parser)
