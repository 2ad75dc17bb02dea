"""``eoflow-fast denoise RUN_DIR --core C --sigma S``: denoise noisy test items with an EOFlow run.

x_noisy = x + S * eps; encode, keep the top C dims, zero the detail, decode (spec §5.3). Prints the
PSNR of the noisy and the denoised items against the clean ones and the gain; ``--grid`` saves
clean / noisy / denoised rows as ``RUN_DIR/denoised_C<C>_s<S>.png``.
Exit status: 0 done, 1 unusable run folder, 2 usage error.
"""
from __future__ import annotations

from pathlib import Path

import torch

from eoflow_fast.train.argtypes import float_in, int_at_least

from .common import print_summary
from .compress import add_common_args, load, save_grid


def run(args) -> int:
    from eoflow_fast.flows.eoflow import psnr

    parser = args.parser
    model, x = load(parser, args)
    gen = torch.Generator().manual_seed(args.seed)
    noisy = x + args.sigma * torch.randn(x.shape, generator=gen).to(x)
    with torch.no_grad():
        den = model.denoise(noisy, args.core)
    base, out = float(psnr(noisy, x).mean()), float(psnr(den, x).mean())
    result = {"C": args.core, "sigma": args.sigma, "n": x.shape[0], "psnr_noisy": base, "psnr_denoised": out,
              "gain_db": out - base}
    if args.grid and len(model.input_shape) == 3:
        path = Path(args.run_dir) / f"denoised_C{args.core}_s{args.sigma:g}.png"
        save_grid(path, [x[:16], noisy[:16], den[:16]], f"clean / noisy (sigma {args.sigma:g}) / denoised (C = {args.core})")
        result["grid"] = str(path)
    print_summary(args, f"denoise {args.run_dir}: C = {args.core}, sigma = {args.sigma:g}, {result['n']} test items",
                  result, {"psnr noisy (dB)": base, "psnr denoised (dB)": out, "gain (dB)": out - base},
                  [result["grid"]] if "grid" in result else [])
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("denoise", help="denoise with the top-C dims of an EOFlow run",
                                   description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--sigma", type=float_in(0.0, low_open=True), default=0.1, help="std of the added Gaussian noise")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="noise seed")
    parser.add_argument("--grid", action="store_true", help="also save clean / noisy / denoised rows as PNG")
    parser.set_defaults(func=run, parser=parser)
