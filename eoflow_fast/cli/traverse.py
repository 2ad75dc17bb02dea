"""``eoflow-fast traverse RUN_DIR``: latent traversals of the top explained-entropy dims.

Encodes test item ``--index``, then for each of the top ``--dims`` dims k (by H_k) sets z_k to
``--steps`` values in [-R, R] (R = ``--range``) with every other latent kept, decodes, and saves one
row per dim to ``--out`` (default ``RUN_DIR/traversal_<index>.png``). Image data only.
Exit status: 0 done, 1 unusable run folder, 2 usage error.
"""
from __future__ import annotations

from pathlib import Path

import torch

from eoflow_fast.train.argtypes import float_in, int_at_least, out_file

from .common import print_summary
from .compress import add_run_args, open_run, save_grid


def run(args) -> int:
    parser = args.parser
    model, _, test_set = open_run(args)
    if len(model.input_shape) != 3:
        parser.error(f"traversals need image data; this run's items have shape {model.input_shape}")
    if not 0 <= args.index < len(test_set):
        parser.error(f"argument --index: expected 0 <= index < {len(test_set)}, got {args.index}")
    if args.dims > model.dim:
        parser.error(f"argument --dims: expected at most D = {model.dim}, got {args.dims}")
    item = test_set[args.index]
    model.condition_on_items([item])  # a class-conditional run: the item's label for every row
    x = (item[0] if isinstance(item, (tuple, list)) else item)[None].to(next(model.parameters()).device)
    values = torch.linspace(-args.range, args.range, args.steps, device=x.device)
    rows = []
    with torch.no_grad():
        z, _ = model.encode(x)
        for k in model.latent_order[:args.dims].tolist():
            zk = z.repeat(args.steps, 1)
            zk[:, k] = values
            rows.append(model.decode_full(zk))
    out = Path(args.out) if args.out else Path(args.run_dir) / f"traversal_{args.index}.png"
    dims = model.latent_order[:args.dims].tolist()
    entropy = model.running_entropy() if model.order_entropy is None else model.order_entropy
    save_grid(out, rows, f"top {args.dims} dims, z_k from {-args.range:g} to {args.range:g} (H: explained entropy, nats)",
              [f"z{k}: H = {float(entropy[k]):.2f}" for k in dims])
    result = {"dims": dims, "saved": str(out)}
    print_summary(args, f"traverse {args.run_dir}: item {args.index}, dims {result['dims']}", result, {}, [str(out)])
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("traverse", help="latent traversals of an EOFlow run's top dims",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="an 'eoflow-fast train eoflow' run folder")
    parser.add_argument("--dims", type=int_at_least(1), default=8, help="how many top dims to traverse")
    parser.add_argument("--steps", type=int_at_least(2), default=9, help="values per dim")
    parser.add_argument("--range", type=float_in(0.0, low_open=True), default=2.5, help="traverse z_k over [-R, R]")
    parser.add_argument("--index", type=int_at_least(0), default=0, help="test item to start from")
    parser.add_argument("--out", metavar="FILE", type=out_file, help="PNG path (default RUN_DIR/traversal_<index>.png)")
    add_run_args(parser)
    parser.set_defaults(func=run, parser=parser)
