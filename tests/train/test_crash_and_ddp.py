"""Real processes: SIGTERM and SIGKILL of a CLI run, and a 2-process gloo DDP run (torchrun's
environment variables, set by hand) against single-process gradients."""
import json
import signal
import subprocess
import time

import torch

from eoflow_fast.cli.main import main
from eoflow_fast.train import checkpoint, engine, toy
from eoflow_fast.train.distributed import EpochBatchSampler
from eoflow_fast.train.logging import read_metrics

TOY_FLAGS = ["--batch-size", "32", "--lr", "0.003", "--n-train", "256", "--hidden", "16", "--log-every", "4",
             "--no-progress"]


def _wait_for_checkpoint(run_dir, at_least, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = checkpoint.list_checkpoints(run_dir)
        if found and found[-1][0] >= at_least:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint >= {at_least} in {run_dir} after {timeout} s")


def test_sigterm_then_sigkill_then_resume_equals_uninterrupted(tmp_path, python, subprocess_env):
    run_dir = tmp_path / "run"
    cmd = [python, "-m", "eoflow_fast.cli.main", "train", "toy", *TOY_FLAGS, "--steps", "1000000",
           "--ckpt-every", "25"]

    # SIGTERM: the run writes a checkpoint of the step it stopped at and exits with 128 + 15.
    proc = subprocess.Popen([*cmd, "--run-dir", str(run_dir)], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(run_dir, 25, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    stop = [r for r in read_metrics(run_dir, "event") if r["event"] == "interrupt"][-1]["step"]
    assert checkpoint.list_checkpoints(run_dir)[-1][0] == stop

    # SIGKILL of the resumed run: at most one checkpoint interval of logged work is lost.
    proc = subprocess.Popen([*cmd, "--resume", str(run_dir)], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(run_dir, stop + 50, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    last_ckpt = checkpoint.list_checkpoints(run_dir)[-1][0]
    last_logged = max(r["step"] for r in read_metrics(run_dir, "train"))
    assert last_ckpt >= stop + 50 and last_logged - last_ckpt <= 25

    # Resume in-process to last_ckpt + 10; compare with one uninterrupted run of that length.
    final = last_ckpt + 10
    assert main(["train", "toy", "--resume", str(run_dir), "--steps", str(final), *TOY_FLAGS]) == 0
    assert main(["train", "toy", "--run-dir", str(tmp_path / "ref"), "--steps", str(final),
                 "--ckpt-every", "25", *TOY_FLAGS]) == 0
    got = {r["step"]: r["loss"] for r in read_metrics(run_dir, "train")}
    ref = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "ref", "train")}
    assert sorted(got) == list(range(1, final + 1))
    assert got == ref



def test_two_process_gloo_ddp_gradients_equal_single_process(tmp_path, python, subprocess_env, free_port):
    steps, batch, lr = 3, 16, 0.1
    flags = ["--batch-size", str(batch), "--lr", str(lr), "--optimizer", "sgd", "--noise", "0",
             "--n-train", "64", "--hidden", "16", "--steps", str(steps), "--ckpt-every", "1", "--keep", "5",
             "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path / "ddp")]
    port = str(free_port)
    procs = []
    for rank in range(2):
        env = dict(subprocess_env, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([python, "-m", "eoflow_fast.cli.main", "train", "toy", *flags], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    ddp_dir = tmp_path / "ddp"

    # Rank 0 alone wrote: one record per step, one start event with world_size 2.
    assert [r["step"] for r in read_metrics(ddp_dir, "train")] == [1, 2, 3]
    assert [r["world_size"] for r in read_metrics(ddp_dir, "event") if r["event"] == "start"] == [2]

    # Step 1's gradient from the SGD update, vs autograd on the same global batch in one process.
    config = json.loads((ddp_dir / "config.json").read_text())
    engine.seed_everything(config["seed"])
    model, data, _ = toy.build(config)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    after1 = checkpoint.load(checkpoint.checkpoint_path(ddp_dir, 1))["model"]
    indices = EpochBatchSampler(len(data), batch, seed=config["seed"]).epoch_order(0)[0]
    x = data.x[indices]
    loss = sum(v for k, v in model.loss_terms((x, data.z[indices]), 0).items() if not k.startswith("_"))
    loss.backward()
    for name, p in model.named_parameters():
        ddp_grad = (initial[name] - after1[name]) / lr
        torch.testing.assert_close(ddp_grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)

    # All three steps: the DDP parameters equal a single-process engine run's.
    engine.seed_everything(config["seed"])
    model, data, _ = toy.build(config)
    engine.train(model, data, {**config, "progress": False}, tmp_path / "single")
    final = checkpoint.load(checkpoint.checkpoint_path(ddp_dir, steps))["model"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(final[k], v, rtol=1e-5, atol=1e-6, msg=k)
