"""eoflow CLI: compress / denoise / traverse on a tiny run; bad arguments give clear errors."""
import json

import pytest
import torch

from eoflow_fast.cli.main import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from eoflow_fast.flows import family
    from eoflow_fast.train.engine import train

    folder = tmp_path_factory.mktemp("eoflow_run")
    cfg = {"model": "eoflow", "data": "digits", "blocks": 1, "hidden": 8, "steps": 2, "batch_size": 64,
           "progress": False}
    model, ds, _ = family.build(cfg)
    train(model, ds, cfg, folder)
    return folder


def test_compress(run_dir, capsys):
    assert main(["compress", str(run_dir), "--core", "8", "--n", "5", "--grid", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ratio"] == 8.0 and out["n"] == 5
    saved = torch.load(out["saved"])
    assert saved["z_core"].shape == (5, 8)
    assert (run_dir / "compressed_C8.png").is_file()


def test_denoise_and_traverse(run_dir, capsys):
    assert main(["denoise", str(run_dir), "--core", "64", "--sigma", "0.1", "--n", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["gain_db"]) < 1e-3  # C = D keeps everything: the "denoised" image is the noisy one
    assert main(["traverse", str(run_dir), "--dims", "2", "--steps", "3"]) == 0
    assert (run_dir / "traversal_0.png").is_file()


@pytest.mark.parametrize("argv, code, message", [
    (["compress", "RUN", "--core", "0"], 2, "--core: expected an integer >= 1, got 0"),
    (["compress", "RUN", "--core", "65"], 2, "--core: expected 1 <= C <= D = 64, got 65"),
    (["compress", "RUN"], 2, "--core"),
    (["compress", "RUN", "--core", "x"], 2, "--core: expected an integer >= 1, got 'x'"),
    (["compress", "RUN", "--core", "auto"], 2, "--core: expected an integer >= 1, got 'auto'"),
    (["denoise", "RUN", "--core", "x"], 2, "--core: expected 'auto' or an integer >= 1, got 'x'"),
    (["denoise", "RUN", "--core", "4", "--sigma", "-1"], 2, "--sigma: expected a finite number in (0, inf), got -1"),
    (["traverse", "RUN", "--dims", "100"], 2, "--dims: expected at most D = 64"),
    (["compress", "MISSING", "--core", "4"], 2, "argument RUN_DIR:"),
])
def test_errors_are_clear(run_dir, tmp_path, capsys, argv, code, message):
    argv = [a.replace("RUN", str(run_dir)).replace("MISSING", str(tmp_path / "nope")) for a in argv]
    with pytest.raises(SystemExit) as exc:
        status = main(argv)
        raise SystemExit(status)
    assert exc.value.code == code
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--lam", "1.5", "argument --lam: expected a finite number in [0, 1], got 1.5"),
    ("--sigma", "-0.1", "argument --sigma: expected a finite number in [0, inf), got -0.1"),
    ("--arch", "vit", "argument --arch: invalid choice: 'vit'"),
    ("--blocks", "0", "argument --blocks: expected an integer >= 1, got 0"),
    ("--core-sizes", "4,x", "argument --core-sizes: expected comma-separated integers"),
])
def test_train_flag_errors_are_clear(capsys, flag, value, message):
    with pytest.raises(SystemExit) as exc:
        main(["train", "eoflow", flag, value])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_build_rejects_multiscale_on_tabular_data():
    from eoflow_fast.flows import family

    with pytest.raises(ValueError, match="--arch glow needs image data"):
        family.build({"data": "wine", "arch": "glow"})


def test_mlp_arch_refuses_large_flat_dims_and_warns_in_between():
    """64x64x3 flattened (12,288 dims) would build two 12,288^2 rotations: refused before any
    allocation; 2,048 dims warns with the cost; the digits' 64 dims pass silently."""
    import warnings

    from eoflow_fast.flows import family

    config = {"data": "folder:imgs", "arch": "mlp", "blocks": 1, "hidden": 8, "clamp": 2.0, "clamp_fn": "atan"}
    with pytest.raises(ValueError, match=r"flattens folder:imgs to 12288 dimensions.*use --arch glow"):
        family._build_flow(config, (3, 64, 64))
    with pytest.warns(RuntimeWarning, match="--arch mlp on 2048 dimensions"):
        family._check_mlp_dim(config, (2048,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        family._check_mlp_dim(config, (1, 8, 8))


def test_train_refuses_data_without_a_test_split_before_training(tmp_path, capsys):
    """2 CSV rows give round(2 * 0.2) = 0 test rows: refused up front (was a traceback from the final
    evaluation, after training), and no run folder is made."""
    (tmp_path / "two.csv").write_text("a,b,c\n1,2,3\n4,5,7\n")
    argv = ["train", "eoflow", "--data", f"csv:{tmp_path / 'two.csv'}", "--steps", "2", "--batch-size", "2",
            "--blocks", "1", "--hidden", "8", "--no-progress", "--run-dir", str(tmp_path / "run")]
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and "has an empty 'test' split (2 training items" in err, err
    assert not (tmp_path / "run").exists()


def test_denoise_core_auto_uses_the_noise_floor(run_dir, capsys):
    from eoflow_fast.flows.eoflow import noise_entropy_floor
    from eoflow_fast.flows.family import open_eoflow_run

    assert main(["denoise", str(run_dir), "--core", "auto", "--sigma", "0.2", "--n", "4", "--grid", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    model, _, _ = open_eoflow_run(run_dir)
    expected = max(1, int((model.entropy_running.double() > noise_entropy_floor(0.2)).sum()))
    assert out["C"] == expected and out["entropy_floor"] == pytest.approx(noise_entropy_floor(0.2))
    searched = (1, 2, 4, 8, 16, 32, 64)  # default_core_sizes(64)
    assert out["C_best"] in searched
    if out["C"] in searched:
        assert out["psnr_best"] >= out["psnr_denoised"]
    assert (run_dir / f"denoised_C{expected}_s0.2.png").is_file()
