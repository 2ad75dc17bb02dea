"""Hostile inputs to EOFlow and to the files of an eoflow run: each gives a correct result or an
error naming the argument or file; never a NaN presented as a result or a stale order used silently."""
import json
import re
import warnings

import pytest
import torch

from eoflow_fast.cli.main import main
from eoflow_fast.flows.architectures import mlp_flow
from eoflow_fast.flows.eoflow import EOFlow
from eoflow_fast.flows.evaluation import evaluate_model, format_table
from eoflow_fast.flows.family import open_eoflow_run
from eoflow_fast.train.checkpoint import CheckpointError

D = 6


def _model(**kw):
    torch.manual_seed(0)
    return EOFlow(mlp_flow(D, blocks=2, hidden=8), (D,), flat_input=True, **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A two-step digits run with a checkpoint at each step."""
    from eoflow_fast.flows import family
    from eoflow_fast.train.engine import train

    folder = tmp_path_factory.mktemp("eoflow_hostile")
    cfg = {"model": "eoflow", "data": "digits", "blocks": 1, "hidden": 8, "steps": 2, "batch_size": 64,
           "ckpt_every": 1, "progress": False}
    model, ds, _ = family.build(cfg)
    train(model, ds, cfg, folder)
    return folder


def _write_entropy(run_dir, checkpoint):
    """entropy.json of an evaluation at ``checkpoint`` (what 'eoflow-fast eval --checkpoint' writes)."""
    model, _, test_set = open_eoflow_run(run_dir, checkpoint)
    evaluate_model(model, test_set, test_set, run_dir, core_sizes=[8], eval_samples=8, entropy_samples=8,
                   pca_samples=64, plots=False)
    return torch.tensor(json.loads((run_dir / "entropy.json").read_text())["entropy"], dtype=torch.float64)


def test_entropy_json_of_other_weights_is_not_used(run_dir):
    """Before: compress/denoise/traverse took the order of any entropy.json, e.g. one evaluated at an
    older checkpoint, and silently kept the wrong core dims for the weights they loaded."""
    old = _write_entropy(run_dir, run_dir / "ckpt-00000001.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same, _, _ = open_eoflow_run(run_dir, run_dir / "ckpt-00000001.pt")  # the weights it was computed with
    assert torch.equal(same.order_entropy, old)
    with pytest.warns(RuntimeWarning, match="entropy.json was computed with other weights"):
        latest, _, _ = open_eoflow_run(run_dir)
    assert torch.equal(latest.order_entropy, latest.running_entropy())
    record = json.loads((run_dir / "entropy.json").read_text())
    del record["weights"]
    (run_dir / "entropy.json").write_text(json.dumps(record))
    with pytest.warns(RuntimeWarning, match="entropy.json records no weights"):
        open_eoflow_run(run_dir, run_dir / "ckpt-00000001.pt")
    (run_dir / "entropy.json").unlink()


@pytest.mark.parametrize("content, message", [
    ('{"entropy": [1.0, 2.', "is damaged"),
    ("[1.0, 2.0]", "is damaged"),
    ('{"entropy": [1.0, 2.0]}', r"must hold 64 finite explained entropies, got shape \(2,\)"),
    ('{"entropy": [NaN' + ", 0.0" * 63 + "]}", "must hold 64 finite explained entropies"),
    ('{"entropy": ["a"' + ", 0.0" * 63 + "]}", "is damaged"),
])
def test_damaged_entropy_json_is_refused_by_name(run_dir, capsys, content, message):
    (run_dir / "entropy.json").write_text(content)
    try:
        with pytest.raises(CheckpointError, match=message):
            open_eoflow_run(run_dir)
        with pytest.raises(SystemExit) as exc:
            main(["compress", str(run_dir), "--core", "4", "--n", "2"])
        assert exc.value.code == 1
        assert "entropy.json" in capsys.readouterr().err
    finally:
        (run_dir / "entropy.json").unlink()


@pytest.mark.parametrize("kw, message", [
    ({"sigma": float("nan")}, "sigma must be a finite number >= 0"),
    ({"sigma": float("inf")}, "sigma must be a finite number >= 0"),
    ({"quant_bins": 0}, "quant_bins must be an integer >= 1"),
    ({"quant_bins": 2.5}, "quant_bins must be an integer >= 1"),
    ({"entropy_momentum": 1.5}, r"entropy_momentum must be in \[0, 1\)"),
    ({"entropy_momentum": float("nan")}, r"entropy_momentum must be in \[0, 1\)"),
])
def test_constructor_refuses_bad_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        _model(**kw)


@pytest.mark.parametrize("C", [0, D + 1, 2.5, True, -1])
def test_core_size_must_be_an_integer_in_range(C):
    model = _model()
    with pytest.raises(ValueError, match=rf"core size C must be an integer in \[1, {D}\], got {C!r}"):
        model.compress(torch.rand(3, D), C)


@pytest.mark.parametrize("shape", [(4, D + 1), (D,), (4, 2, 3), (4,)])
def test_encode_names_a_wrong_input_shape(shape):
    with pytest.raises(ValueError, match=re.escape(f"x must have shape (B, {D}), got {tuple(shape)}")):
        _model().encode(torch.rand(*shape))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_evaluation_of_non_finite_items_is_refused(bad):
    model = _model()
    x = torch.rand(5, D)
    x[3, 1] = bad
    for fn in (model.bits_per_dim, model.explained_entropy):
        with pytest.raises(ValueError, match="x holds NaN or infinite values in 1 of 5 item.*index 3"):
            fn(x)
    for fn in (model.bits_per_dim, model.explained_entropy):
        with pytest.raises(ValueError, match="x has no items"):
            fn(torch.rand(0, D))
    with pytest.raises(ValueError, match=r"set_order: entropy holds NaN at dims \[2\]"):
        model.set_order(torch.tensor([1.0, 0.0, float("nan"), 2.0, 3.0, 4.0]))


def test_evaluate_model_without_training_noise(tmp_path):
    """sigma = 0 and no dequantisation: no noise floor, so no entropy share (before: math domain error)."""
    model = _model(sigma=0.0, dequantize=False)
    items = [torch.rand(D) for _ in range(16)]
    report = evaluate_model(model, items, items, tmp_path, core_sizes=[2, D], plots=False)
    assert report["entropy_top_fraction"] == {"2": None, str(D): None}
    assert all(torch.isfinite(torch.tensor(row["psnr_pca"])) or row["C"] == D for row in report["compression"])
    assert "n/a" in format_table(report)
    assert json.loads((tmp_path / "eval.json").read_text())["entropy_top_fraction"]["2"] is None


@pytest.mark.parametrize("argv, message", [
    (["compress", "RUN", "--core", "4", "--out", "MISSING/z.pt"], "argument --out: the folder"),
    (["compress", "RUN", "--core", "4", "--out", "TMP"], "argument --out: expected a file path, got the folder"),
    (["traverse", "RUN", "--out", "MISSING/t.png"], "argument --out: the folder"),
])
def test_an_unwritable_out_path_is_a_usage_error(run_dir, tmp_path, capsys, argv, message):
    """Before: the work ran, then torch.save / savefig raised a traceback."""
    argv = [a.replace("RUN", str(run_dir)).replace("MISSING", str(tmp_path / "nope")).replace("TMP", str(tmp_path))
            for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_psnr_of_a_finite_far_off_float32_reconstruction_is_finite():
    """(1e20)^2 overflows float32: before, PSNR -inf and a NaN gain in denoise --sigma 1e30."""
    from eoflow_fast.flows.eoflow import psnr

    x = torch.zeros(2, 3)
    assert psnr(torch.full((2, 3), 1e20), x).tolist() == pytest.approx([-400.0, -400.0])


@pytest.mark.parametrize("sizes", [[2, D + 1], [D + 1], [0, 3], [2.5], [True]])
def test_evaluate_model_refuses_core_sizes_outside_one_to_d(tmp_path, sizes):
    """Before: sizes outside [1, D] were left out silently (none left: an empty table and an
    IndexError in the plots); 2.5 reached a slice."""
    items = [torch.rand(D) for _ in range(8)]
    with pytest.raises(ValueError, match=rf"core_sizes must be integers in \[1, D = {D}\], got"):
        evaluate_model(_model(), items, items, tmp_path, core_sizes=sizes, plots=False)


def test_core_sizes_above_d_are_a_usage_error_before_training_and_at_eval(run_dir, tmp_path, capsys):
    assert main(["train", "eoflow", "--data", "digits", "--core-sizes", "4,65", "--steps", "1",
                 "--run-dir", str(tmp_path / "never"), "--no-progress"]) == 2
    assert "argument --core-sizes: expected sizes <= D = 64" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    assert main(["eval", str(run_dir), "--core-sizes", "4,65", "--no-plots", "--no-progress"]) == 2
    assert "argument --core-sizes: expected sizes <= D = 64" in capsys.readouterr().err


def test_dims_training_never_sampled_are_not_core(tmp_path):
    """One step of batch 16 < D = 64 samples 16 dims. Before: the other 48 kept entropy_running 0,
    ranked above sampled dims of negative entropy (5 of the top 16 'core' dims had no estimate) and
    core_above_noise(0.1) counted them all."""
    from eoflow_fast.flows import family
    from eoflow_fast.flows.eoflow import noise_entropy_floor
    from eoflow_fast.train.engine import train

    cfg = {"model": "eoflow", "data": "digits", "blocks": 1, "hidden": 8, "steps": 1, "batch_size": 16,
           "progress": False}
    model, ds, _ = family.build(cfg)
    train(model, ds, cfg, tmp_path)
    model, _, _ = open_eoflow_run(tmp_path)
    visited = model.entropy_visits.cpu() > 0
    assert int(visited.sum()) == 16
    assert visited[model.latent_order[:16].cpu()].all()
    above = (model.entropy_running.cpu().double() > noise_entropy_floor(0.1)) & visited
    assert model.core_above_noise(0.1) == max(1, int(above.sum()))


@pytest.mark.parametrize("first", ["nan", "inf", "one item"])
def test_actnorm_init_from_a_bad_first_batch_is_refused_and_left_undone(first):
    """Before: ActNorm's data-dependent init took NaN statistics from a first training batch with one
    NaN item (or from a batch of one), so every output of every later batch was NaN."""
    model = _model()
    x = torch.rand(1 if first == "one item" else 4, D)
    if first != "one item":
        x[1, 3] = float(first)
    with pytest.raises(ValueError, match="ActNorm: the first training batch sets the data-dependent"):
        model.encode(x)
    z, log_det = model.encode(torch.rand(4, D))  # initialised from this clean batch instead
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    bad = torch.rand(4, D)
    bad[2, 0] = float("nan")
    z, _ = model.encode(bad)
    assert torch.isfinite(z).all(dim=1).tolist() == [True, True, False, True]  # one NaN item spoils only itself
