"""Disentanglement and flow metrics: array-level functions and the dataset-level ``evaluate``.

Array level (one module per metric; codes (N, d) float, factors (N, F) integer -> dict of named
scores, defaults beside each function, equal to disentanglement_lib's):
    mig, nmi, dci, sap, factor_vae, beta_vae, modularity_explicitness, unsupervised, failure_rate,
    informative (per_dimension_kl, informative_dimensions, false_discovery_rate), fvh_lt, dbsr_ls,
    separation_index, greedy_alignment / align_runs, flow (explained_entropy,
    manifold_total_correlation, mpmi, cross_mpmi, flow_metrics), discrete_mi_matrix,
    histogram_discretize.

Dataset level::

    results = evaluate(["mig", "dci"], ground_truth_data, representation_fn, rng=0, out_dir=None, **kw)

``ground_truth_data`` follows disentanglement_lib's GroundTruthData interface (``num_factors``,
``sample(n, rng)``, ``sample_factors(n, rng)``, ``sample_observations_from_factors(f, rng)``);
``representation_fn(observations ndarray) -> codes ndarray (n, d)`` (the encoder mean, float32).
Returns {metric name: {score name: value}} (see ``METRICS`` for the names).

``rng``: an int seed gives every metric a fresh ``np.random.RandomState(seed)``, as
disentanglement_lib evaluates each metric with ``evaluation.random_seed`` (0), so numbers match
separate runs of each metric; metrics that draw the same (num_train, num_test, batch_size) points
(mig, nmi, dci, sap, modularity, unsupervised) then share one draw and one encoder pass, which
gives identical results. A ``np.random.RandomState`` is instead consumed by the metrics in order.

``**kw``: ``NAME={...}`` sets parameters of metric NAME (e.g. ``dci={"num_train": 1000}``); any
other keyword goes to every selected metric whose wrapper takes it (``num_train=1000`` shrinks all
of them); a keyword no metric takes is an error. Label-free metrics take model callables:
``encoder_fn(obs) -> (mu, logvar)`` for "informative", ``decode_fn(codes) -> features`` for
"fvh_lt", ``jacobian_fn(codes) -> (n, D_out, D)`` for "flow"; these may always be passed and are
ignored by metrics that do not use them. "separation" is computed from "dbsr_ls" (and "fvh_lt"
when ``decode_fn`` is given, "informative" when ``encoder_fn`` is given), which are added to the run.
``progress``: per-metric progress lines (and per factor / batch inside the slow metrics) through
``eoflow_fast.progress``; False silences them, None keeps the current default (on).
With ``out_dir`` JSON + heat maps are written (``report.write_report``), labelled with ``source``
(the checkpoint the codes came from: step, file, weights digest; results of other weights are kept
apart, never merged); nothing is printed (the table of the scalars: ``format_table(results)``).

A model family's ``evaluate`` hook (``eoflow-fast eval RUN_DIR --metrics mig,dci``) is::

    from eoflow_fast import metrics
    from eoflow_fast.data import get_ground_truth

    def add_eval_args(parser):
        metrics.add_eval_args(parser)          # --metrics, --metric-seed, --num-train, --num-test

    def evaluate(run_dir, model, config, args, source=None):
        gtd = get_ground_truth(config["dataset"])
        def representation_fn(obs):            # encoder mean, float32 (n, d)
            with torch.no_grad():
                return model.encode(torch.from_numpy(obs).to(device))[0].cpu().numpy()
        return metrics.evaluate(**metrics.eval_kwargs(args), ground_truth_data=gtd,
                                representation_fn=representation_fn, out_dir=Path(run_dir) / "eval", source=source,
                                encoder_fn=..., decode_fn=..., jacobian_fn=...)  # optional callables
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from eoflow_fast import progress as _progress

from ._common import sample_codes_factors
from .alignment import align_runs, apply_alignment, greedy_alignment
from .beta_vae import beta_vae, beta_vae_features, compute_beta_vae
from .dbsr_ls import compute_dbsr_ls, dbsr_ls
from .dci import compute_dci, dci
from .discrete_mi import discrete_entropy, discrete_mi_matrix, mutual_info_matrix
from .discretize import histogram_discretize
from .factor_vae import compute_factor_vae, factor_vae
from .failure_rate import failure_rate
from .flow import compute_flow, cross_mpmi, explained_entropy, flow_metrics, manifold_total_correlation, mpmi
from .fvh_lt import compute_fvh_lt, fvh_lt
from .informative import compute_informative, false_discovery_rate, informative, informative_dimensions, per_dimension_kl
from .mig import compute_mig, mig
from .modularity import compute_modularity_explicitness, modularity_explicitness
from .nmi import compute_nmi, nmi
from .report import format_table, write_report
from .sap import compute_sap, sap
from .separation import combined_association, separation_index
from .unsupervised import compute_unsupervised, unsupervised

__all__ = [
    "align_runs", "apply_alignment", "beta_vae", "beta_vae_features", "combined_association", "cross_mpmi",
    "dbsr_ls", "dci", "discrete_entropy", "discrete_mi_matrix", "evaluate", "explained_entropy", "factor_vae",
    "failure_rate", "false_discovery_rate", "flow_metrics", "format_table", "fvh_lt", "greedy_alignment",
    "histogram_discretize", "informative", "informative_dimensions", "manifold_total_correlation", "mig",
    "modularity_explicitness", "mpmi", "mutual_info_matrix", "nmi", "per_dimension_kl", "sap",
    "separation_index", "unsupervised", "write_report", "METRICS", "DEFAULT_METRICS", "parse_metric_names",
    "add_eval_args", "eval_kwargs",
]

_SEED_RANGE = 2**31 - 1
MODEL_CALLABLES = ("encoder_fn", "decode_fn", "jacobian_fn")


@dataclass(frozen=True)
class Metric:
    """A dataset-level metric: ``compute(gtd, representation_fn, rng, **params)``; ``shared(train, test,
    rng_after_draws, **params)`` evaluates it on shared draws (None: not shareable); ``test`` says
    whether it draws a test set after the training set."""
    compute: Callable
    shared: Callable | None = None
    test: bool = False


METRICS: dict[str, Metric] = {
    "mig": Metric(compute_mig, lambda tr, te, rs, **p: mig(*tr, **p)),
    "nmi": Metric(compute_nmi, lambda tr, te, rs, **p: nmi(*tr, **p)),
    "dci": Metric(compute_dci, lambda tr, te, rs, **p: dci(*tr, *te, **p, random_state=rs.randint(_SEED_RANGE)), True),
    "sap": Metric(compute_sap, lambda tr, te, rs, **p: sap(*tr, *te, **p, random_state=rs.randint(_SEED_RANGE)),
                  True),
    "modularity": Metric(compute_modularity_explicitness, lambda tr, te, rs, **p: modularity_explicitness(*tr, *te, **p),
                         True),
    "unsupervised": Metric(compute_unsupervised, lambda tr, te, rs, **p: unsupervised(tr[0], **p)),
    "factor_vae": Metric(compute_factor_vae),
    "beta_vae": Metric(compute_beta_vae),
    "informative": Metric(compute_informative),
    "fvh_lt": Metric(compute_fvh_lt),
    "dbsr_ls": Metric(compute_dbsr_ls),
    "flow": Metric(compute_flow),
    "separation": Metric(None),
}
DEFAULT_METRICS = ("mig", "dci", "sap", "factor_vae", "beta_vae", "modularity", "nmi", "unsupervised")
_DRAW_PARAMS = ("num_train", "num_test", "batch_size")


def parse_metric_names(names) -> list[str]:
    """Metric names from "mig,dci" or a list; "default" expands to ``DEFAULT_METRICS``. Unknown names raise."""
    items = names.split(",") if isinstance(names, str) else list(names)
    out = []
    for item in (s.strip() for s in items):
        for name in (DEFAULT_METRICS if item == "default" else (item,)):
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)} (or 'default')")
            if name and name not in out:
                out.append(name)
    if not out:
        raise ValueError("no metric names given")
    return out


def _parameters(name: str) -> dict[str, inspect.Parameter]:
    compute = METRICS[name].compute
    if compute is None:
        return {}
    return dict(list(inspect.signature(compute).parameters.items())[3:])


def _split_kwargs(names: list[str], kw: dict) -> dict[str, dict]:
    known = {p for n in METRICS for p in _parameters(n)}
    plain = {}
    for key, value in kw.items():
        if key in METRICS:
            if not isinstance(value, dict):
                raise TypeError(f"evaluate: {key}= must be a dict of parameters, got {type(value).__name__}")
            bad = set(value) - set(_parameters(key))
            if bad:
                raise TypeError(f"evaluate: metric {key!r} takes no parameter(s) {sorted(bad)}; "
                                f"it takes {sorted(_parameters(key))}")
        elif key not in known:
            raise TypeError(f"evaluate: no metric takes the keyword {key!r}")
        else:
            plain[key] = value
    plans = {}
    for name in names:
        params = _parameters(name)
        plan = {k: v for k, v in plain.items() if k in params}
        plan.update(kw.get(name, {}))
        missing = [p for p, spec in params.items() if spec.default is inspect.Parameter.empty and p not in plan]
        if missing:
            raise TypeError(f"evaluate: metric {name!r} needs {', '.join(f'{m}=...' for m in missing)}")
        plans[name] = plan
    return plans


class _SharedDraws:
    """Training / test draws from fresh ``RandomState(seed)``s, each computed once per size."""

    def __init__(self, ground_truth_data, representation_fn, seed: int):
        self.data, self.fn, self.seed, self.cache = ground_truth_data, representation_fn, seed, {}

    def _draw(self, key, state, num_points, batch_size):
        if key not in self.cache:
            rs = np.random.RandomState(self.seed)
            if state is not None:
                rs.set_state(state)
            points = sample_codes_factors(self.data, self.fn, num_points, rs, batch_size)
            self.cache[key] = (points, rs.get_state())
        return self.cache[key]

    def get(self, num_train: int, batch_size: int, num_test: int | None):
        train, state = self._draw((num_train, batch_size), None, num_train, batch_size)
        test = None
        if num_test is not None:
            test, state = self._draw((num_train, batch_size, num_test), state, num_test, batch_size)
        rs = np.random.RandomState()
        rs.set_state(state)
        return train, test, rs


def _with_dependencies(names: list[str], kw: dict) -> list[str]:
    if "separation" not in names:
        return names
    needed = ["dbsr_ls"] + (["fvh_lt"] if "decode_fn" in kw else []) + (["informative"] if "encoder_fn" in kw else [])
    head = [n for n in names if n != "separation"]
    return head + [n for n in needed if n not in head] + ["separation"]


def _separation(results: dict) -> dict:
    association = combined_association(results.get("fvh_lt", {}).get("variance"), results["dbsr_ls"]["theta"])
    mask = results["informative"]["informative"] if "informative" in results else None
    return separation_index(association, mask)


def evaluate(names, ground_truth_data, representation_fn, rng=0, out_dir=None, progress: bool | None = None,
             source: dict | None = None, **kw) -> dict:
    """Run the named metrics on ``ground_truth_data`` and return {name: scores} (see the module
    docstring); ``source`` (``train.checkpoint.source``) names the weights in ``out_dir/metrics.json``."""
    with _progress.enabled(_progress.is_enabled() if progress is None else progress):
        return _evaluate(names, ground_truth_data, representation_fn, rng, out_dir, source, kw)


def _evaluate(names, ground_truth_data, representation_fn, rng, out_dir, source, kw: dict) -> dict:
    names = _with_dependencies(parse_metric_names(names), kw)
    model_callables = {k: kw.pop(k) for k in MODEL_CALLABLES if k in kw}
    plans = _split_kwargs(names, {**kw, **{k: v for k, v in model_callables.items()
                                          if any(k in _parameters(n) for n in names)}})
    seeded = isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)
    if not seeded and not isinstance(rng, np.random.RandomState):
        raise TypeError(f"evaluate: rng must be an int seed or np.random.RandomState, got {type(rng).__name__}")
    if seeded and not 0 <= rng < 2**32:
        raise ValueError(f"evaluate: rng seed must be in [0, 2**32), got {rng}")
    draws = _SharedDraws(ground_truth_data, representation_fn, int(rng)) if seeded else None
    results = {}
    for name in _progress.bar(names, "metrics", unit="metric"):
        metric, params = METRICS[name], dict(plans[name])
        if name == "separation":
            results[name] = _separation(results)
        elif seeded and metric.shared is not None:
            defaults = {k: p.default for k, p in _parameters(name).items()}
            draw = {k: params.pop(k, defaults.get(k)) for k in _DRAW_PARAMS}
            train, test, rs = draws.get(draw["num_train"], draw["batch_size"], draw["num_test"] if metric.test else None)
            results[name] = metric.shared(train, test, rs, **params)
        else:
            results[name] = metric.compute(ground_truth_data, representation_fn,
                                           np.random.RandomState(int(rng)) if seeded else rng, **params)
    if out_dir is not None:
        write_report(results, out_dir, factor_names=getattr(ground_truth_data, "factor_names", None), source=source)
    return results


def add_eval_args(parser) -> None:
    """Add ``--metrics``, ``--metric-seed``, ``--num-train``, ``--num-test`` to an argparse parser."""
    parser.add_argument("--metrics", default="default",
                        help=f"comma-separated metrics from {', '.join(METRICS)}; 'default' = {','.join(DEFAULT_METRICS)}")
    from eoflow_fast.train.argtypes import int_at_least

    parser.add_argument("--metric-seed", type=int_at_least(0), default=0,
                        help="seed of every metric's RandomState (default 0)")
    parser.add_argument("--num-train", type=int_at_least(2), default=None,
                        help="override the metrics' num_train (default 10000)")
    parser.add_argument("--num-test", type=int_at_least(2), default=None,
                        help="override the metrics' num_test (default 5000)")


def eval_kwargs(args) -> dict:
    """The ``evaluate`` keywords from parsed ``add_eval_args`` flags (names, rng and size overrides)."""
    out = {"names": parse_metric_names(args.metrics), "rng": args.metric_seed}
    for key in ("num_train", "num_test"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    return out
