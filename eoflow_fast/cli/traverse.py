"""``eoflow-fast traverse RUN_DIR``: latent traversals of the top explained-entropy dims.

Encodes test item ``--index``, then for each of the top ``--dims`` dims k (by H_k) sets z_k to
``--steps`` values in [-R, R] (R = ``--range``) with every other latent kept, decodes, and saves one
row per dim to ``--out`` (default ``RUN_DIR/traversal_<index>.png``). Image data only.
Exit status: 0 done, 1 unusable run folder, 2 usage error.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .compress import save_grid


def run(args) -> int:
    from eoflow_fast.flows.family import open_eoflow_run
    from eoflow_fast.train.checkpoint import CheckpointError

    parser = args.parser
    if args.dims < 1 or args.steps < 2 or not args.range > 0:
        parser.error(f"arguments --dims >= 1, --steps >= 2 and --range > 0 expected, "
                     f"got --dims {args.dims} --steps {args.steps} --range {args.range}")
    try:
        model, _, test_set = open_eoflow_run(args.run_dir, args.checkpoint, args.device)
    except (FileNotFoundError, ValueError, CheckpointError, json.JSONDecodeError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    if len(model.input_shape) != 3:
        parser.error(f"traversals need image data; this run's items have shape {model.input_shape}")
    if not 0 <= args.index < len(test_set):
        parser.error(f"argument --index: expected 0 <= index < {len(test_set)}, got {args.index}")
    if args.dims > model.dim:
        parser.error(f"argument --dims: expected at most D = {model.dim}, got {args.dims}")
    item = test_set[args.index]
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
    entropy = getattr(model, "order_entropy", model.entropy_running.cpu())
    save_grid(out, rows, f"top {args.dims} dims, z_k from {-args.range:g} to {args.range:g} (H: explained entropy, nats)",
              [f"z{k}: H = {float(entropy[k]):.2f}" for k in dims])
    print(json.dumps({"dims": dims, "saved": str(out)}))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("traverse", help="latent traversals of an EOFlow run's top dims",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="an 'eoflow-fast train eoflow' run folder")
    parser.add_argument("--dims", type=int, default=8, help="how many top dims to traverse")
    parser.add_argument("--steps", type=int, default=9, help="values per dim")
    parser.add_argument("--range", type=float, default=2.5, help="traverse z_k over [-R, R]")
    parser.add_argument("--index", type=int, default=0, help="test item to start from")
    parser.add_argument("--out", metavar="FILE", help="PNG path (default RUN_DIR/traversal_<index>.png)")
    parser.add_argument("--checkpoint", metavar="FILE", help="checkpoint (default: the latest in RUN_DIR)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.set_defaults(func=run, parser=parser)
