"""A model whose outputs are not finite is reported as such, never as a bare NaN number. Before:
compress printed "psnr (dB)  nan", denoise "psnr denoised (dB)  nan", bits_per_dim returned nan, and
eval wrote NaN losses into its summary and eval.jsonl."""
import dataclasses
import math

import pytest
import torch

from eoflow_fast.cli.main import main
from eoflow_fast.flows.eoflow import EOFlow, NonFiniteOutputError, mean_psnr
from eoflow_fast.train import engine, registry


def _poisoned(fn, rows=(1, 3)):
    """``fn`` with NaN in the given rows of its output (a diverged decoder)."""
    def wrapped(self, *args, **kwargs):
        out = fn(self, *args, **kwargs).clone()
        out[list(rows)] = float("nan")
        return out
    return wrapped


def test_mean_psnr_counts_the_non_finite_items():
    x = torch.rand(5, 4)
    assert mean_psnr(x + 0.1, x) == pytest.approx(20.0)
    bad = x.clone()
    bad[2, 0], bad[4, 1] = float("nan"), float("inf")
    with pytest.raises(NonFiniteOutputError, match=r"the reconstruction holds NaN or infinite values in 2 of 5 "
                                                   r"item\(s\), the first at index 2"):
        mean_psnr(bad, x)
    assert mean_psnr(x, x) == math.inf  # exact is +inf, not an error


@pytest.fixture
def run_dir(tiny_eoflow_run):
    return tiny_eoflow_run


@pytest.mark.parametrize("argv, method, message", [
    (["compress", "RUN", "--core", "4", "--n", "5"], "decode",
     "compress: PSNR at C = 4: the reconstruction holds NaN or infinite values in 2 of 5 item(s)"),
    (["denoise", "RUN", "--core", "4", "--n", "5"], "denoise",
     "denoise: PSNR at C = 4: the reconstruction holds NaN or infinite values in 2 of 5 item(s)"),
    (["eval", "RUN", "--no-plots", "--no-progress"], "compress", "the reconstruction holds NaN or infinite values"),
])
def test_cli_reports_non_finite_outputs_in_one_line(run_dir, monkeypatch, capsys, argv, method, message):
    monkeypatch.setattr(EOFlow, method, _poisoned(getattr(EOFlow, method)))
    before = sorted(p.name for p in run_dir.iterdir())
    capsys.readouterr()
    try:
        status = main([a.replace("RUN", str(run_dir)) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    assert status == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert "nan" not in out.lower()
    if argv[0] != "eval":  # eval rewrites its own report files before the check; compress/denoise save nothing
        assert sorted(p.name for p in run_dir.iterdir()) == before


def test_eval_refuses_nan_losses_of_a_family_without_evaluation(tmp_path, monkeypatch, capsys):
    run = tmp_path / "toy"
    assert main(["train", "toy", "--steps", "2", "--run-dir", str(run), "--no-progress"]) == 0
    monkeypatch.setattr(engine, "evaluate_loss", lambda *a, **k: {"recon": float("nan"), "loss": float("nan")})
    spec = registry.get("toy")
    monkeypatch.setattr(registry, "get", lambda name: dataclasses.replace(spec, evaluate=None))
    capsys.readouterr()
    assert main(["eval", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "gave NaN for 2 score(s) (recon, loss)" in err and len(err.strip().splitlines()) == 1, err
    assert not (run / "eval.jsonl").exists()


def test_bits_per_dim_refuses_a_non_finite_nll(monkeypatch):
    from eoflow_fast.flows import family

    model, ds, _ = family.build({"model": "eoflow", "data": "digits", "blocks": 1, "hidden": 8})
    x = torch.stack([ds[i] for i in range(6)])
    assert math.isfinite(model.bits_per_dim(x))

    def encode(self, x):
        z = torch.zeros(x.shape[0], self.dim)
        z[4] = float("inf")
        return z, torch.zeros(x.shape[0])
    monkeypatch.setattr(EOFlow, "encode", encode)
    with pytest.raises(NonFiniteOutputError, match=r"EOFlow.bits_per_dim: the NLL holds NaN or infinite values in "
                                                   r"1 of 6 item\(s\), the first at index 4"):
        model.bits_per_dim(x)
