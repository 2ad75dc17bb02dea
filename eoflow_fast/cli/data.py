"""``eoflow-fast data``: pack image folders into memory-mapped shards, verify a pack, describe a spec.

    eoflow-fast data pack SRC DST [--size 64] [--crop N] [--shard-size 4096] [--workers 0]
                                  [--max-pixels 89478485] [--no-progress]
    eoflow-fast data verify DIR [--no-progress]
    eoflow-fast data info SPEC [--split train]

``verify`` exits 1 and names every bad shard (truncated, wrong dtype/shape, swapped, changed bytes);
a missing DIR is a usage error (exit 2).
Progress (pack, verify) goes to stderr: a tqdm bar on a terminal, else a line per 500 images / GiB.

Each subcommand sets ``func(args) -> int`` (exit status) on the parsed namespace.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .common import UsageError, add_json

from eoflow_fast.data import SPLIT_NAMES, split_arg
from eoflow_fast.data.images import DEFAULT_MAX_PIXELS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _max_pixels(text: str) -> int | None:
    return None if text.lower() == "none" else _positive_int(text)


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="prepare and inspect datasets")
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{pack,verify,info}")

    pack = sub.add_parser("pack", help="decode images once into uint8 memory-mapped shards (resumable)",
                          description="Pack a CelebA root (img_align_celeba/ + list_eval_partition.txt) or any "
                                      "image folder into DST; rerun with the same arguments to resume.")
    pack.add_argument("src", help="CelebA root or image folder")
    pack.add_argument("dst", help="output directory (created; resumed if it holds a pack with the same settings)")
    pack.add_argument("--size", type=_positive_int, default=64, help="output side in pixels (default 64; e.g. 128)")
    pack.add_argument("--crop", type=_positive_int, default=None,
                      help="centre-crop side before resizing (default: 148 for CelebA, else the largest square)")
    pack.add_argument("--shard-size", type=_positive_int, default=4096, help="images per shard (default 4096)")
    pack.add_argument("--workers", type=int, default=0, help="decoding processes (default 0: in-process)")
    pack.add_argument("--max-pixels", type=_max_pixels, default=DEFAULT_MAX_PIXELS, metavar="N",
                      help=f"skip (by name) images declaring more than N pixels, width*height: a decompression-"
                           f"bomb guard; 'none' for no limit (default {DEFAULT_MAX_PIXELS}, PIL's)")
    pack.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    pack.set_defaults(func=run_pack)

    verify = sub.add_parser("verify", help="check every shard of a pack against its recorded size, dtype, shape "
                                           "and checksum", description="Exit 1 naming each bad shard.")
    verify.add_argument("dir", help="a directory written by `eoflow-fast data pack`")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    verify.set_defaults(func=run_verify)

    info = sub.add_parser("info", help="print what a dataset spec yields, its split sizes and split rule")
    info.add_argument("spec", help="e.g. dsprites, dsprites_scream, fa24, wine, csv:PATH, celeba:ROOT, packed:DIR")
    info.add_argument("--split", default="train", type=split_arg, choices=SPLIT_NAMES,
                      help="train | valid (CelebA only) | test | all (default train; 'eval' is a deprecated alias "
                           "of test)")
    add_json(info)
    info.set_defaults(func=run_info)


def run_pack(args) -> int:
    from eoflow_fast.data.packed import pack_images

    try:
        index = pack_images(args.src, args.dst, size=args.size, crop=args.crop, shard_size=args.shard_size,
                            workers=args.workers, progress=not args.no_progress, max_pixels=args.max_pixels)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(err) from err
    print(f"packed {len(index['names'])} images into {len(index['shards'])} shards in {args.dst}; "
          f"skipped {len(index['skipped'])} unreadable: {[s['name'] for s in index['skipped']]}")
    return 0


def run_verify(args) -> int:
    from eoflow_fast.data.packed import verify_pack

    if not os.path.isdir(os.path.expanduser(args.dir)):
        raise UsageError(f"argument dir: no directory at {args.dir!r}")
    try:
        bad = verify_pack(args.dir, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as err:  # a pack folder with a missing or damaged index
        print(f"eoflow-fast data verify: {err}", file=sys.stderr)
        return 1
    if bad:
        print(f"eoflow-fast data verify: {len(bad)} bad shard(s) in {args.dir}: {[f for f, _ in bad]}; rerun "
              "`eoflow-fast data pack` with the original arguments to re-pack them", file=sys.stderr)
        return 1
    print(f"{args.dir}: every shard matches its recorded size, dtype, shape and checksum")
    return 0


def run_info(args) -> int:
    from eoflow_fast.data import get_dataset

    try:
        ds = get_dataset(args.spec, args.split)
        first = ds[0]
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(err) from err
    x = first[0] if isinstance(first, (tuple, list)) else first
    info = {"spec": args.spec, "split": args.split, "items": len(ds), "item_shape": list(x.shape),
            "dtype": str(x.dtype)}
    data = getattr(ds, "data", None)
    if data is not None:
        info.update(factor_names=list(data.factor_names), factor_sizes=list(data.factor_sizes))
    if getattr(ds, "columns", None):
        info["columns"] = list(ds.columns)
    info["split_sizes"] = ds.split_sizes() if hasattr(ds, "split_sizes") else split_sizes(args.spec)
    if getattr(ds, "split_rule", None):
        info["split_rule"] = ds.split_rule
    if getattr(ds, "skipped", None):
        info["skipped"] = [s["name"] for s in ds.skipped]
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(info_lines(info)))
    return 0


def split_sizes(spec: str) -> dict[str, int]:
    """Items per split name the spec accepts ("valid" only for CelebA)."""
    from eoflow_fast.data import get_dataset

    sizes = {}
    for split in ("train", "valid", "test", "all"):
        try:
            sizes[split] = len(get_dataset(spec, split))
        except ValueError:  # a split this kind of data does not have
            continue
    return sizes


def info_lines(info: dict) -> list[str]:
    """``data info``'s summary: items, item shape and dtype, then split sizes and rule, factors,
    columns and skipped files where the dataset has them (the same facts as ``--json``)."""
    shape = "x".join(str(n) for n in info["item_shape"]) or "scalar"
    lines = [f"{info['spec']} ({info['split']} split): {info['items']} items of shape {shape}, "
             f"{info['dtype'].removeprefix('torch.')}"]
    if "split_sizes" in info:
        lines.append("  split sizes  " + ", ".join(f"{k} {v}" for k, v in info["split_sizes"].items()))
    if "split_rule" in info:
        lines.append(f"  split rule   {info['split_rule']}")
    if "factor_names" in info:
        lines.append("  factors      " + ", ".join(f"{n} ({k} values)" for n, k in
                                                   zip(info["factor_names"], info["factor_sizes"])))
    if "columns" in info:
        lines.append(f"  columns      {', '.join(info['columns'])}")
    if "skipped" in info:
        lines.append(f"  skipped      {len(info['skipped'])} unreadable: {', '.join(info['skipped'])}")
    return lines
