"""`mcls train` as real processes: SIGKILL + resume, and DDP (gloo, 2 processes) on CPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from test_training_support import REPO, TESTS, make_rows, make_setup, read_jsonl, state_of, write_encoded

MCLS = [sys.executable, "-m", "mcls.cli"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("WORLD_SIZE", None)
    return env


def _train_cmd(spec: dict, out: Path) -> list[str]:
    return [*MCLS, "train", "--spec", json.dumps(spec), "--out", str(out)]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300, **kw)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _max_step(log: Path) -> int:
    if not log.exists():
        return 0
    steps = [0]
    for line in log.read_text().splitlines():
        try:
            steps.append(json.loads(line).get("step", 0))
        except json.JSONDecodeError:
            pass
    return max(steps)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    spec = make_setup(tmp_path, n_train=64, optim={"epochs": 50, "warmup_steps": 20},
                      checkpoint_every=10, log_every=1)
    total = 16 * 50
    _run(_train_cmd(spec, tmp_path / "ref"))

    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(spec, out), env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _max_step(out / "train.jsonl") < 25 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpt = state_of(out / "checkpoints" / "last.pt")
    logged = _max_step(out / "train.jsonl")
    assert 20 <= ckpt["step"] < total and logged < total
    assert not (out / "final.pt").exists()

    res = _run(_train_cmd(spec, out))
    assert f"resumed from {out / 'checkpoints' / 'last.pt'} at step {ckpt['step']}" in res.stderr

    ref, run = state_of(tmp_path / "ref" / "final.pt"), state_of(out / "final.pt")
    assert ref["step"] == run["step"]
    for k, v in ref["model"].items():
        assert torch.equal(v, run["model"][k]), k  # bitwise
    steps = [r["step"] for r in read_jsonl(out / "train.jsonl") if r["event"] == "train"]
    assert steps == list(range(1, total + 1))  # the log was cut back to the checkpoint, no duplicates
    ref_loss = [r["loss"] for r in read_jsonl(tmp_path / "ref" / "train.jsonl") if r["event"] == "train"]
    run_loss = [r["loss"] for r in read_jsonl(out / "train.jsonl") if r["event"] == "train"]
    assert ref_loss == run_loss


@pytest.mark.slow
def test_ddp_two_processes_follow_the_one_process_trajectory(tmp_path):
    if shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("torchrun not installed next to this python")
    rows = make_rows(23, seed=1)
    rows.append({"video_id": "long", "en": list(range(3, 19)) * 3 + [1], "src": [3, 1], "sum": [4, 5, 1]})
    train = write_encoded(tmp_path / "train.parquet", rows)
    spec = make_setup(tmp_path, sizes={"d_model": 16, "dropout": 0.0},
                      optim={"epochs": 3, "batch_size": 5, "max_tokens": 80, "warmup_steps": 3},
                      checkpoint_every=5, log_every=1)
    spec["data"]["train"] = str(train)

    from mcls.training import BucketSampler, SplitData
    from mcls.encoded import EncodedSplit

    ds = SplitData(EncodedSplit(train), {"src": "en", "tgt": "sum"})
    sizes = [len(b) for b in BucketSampler([ds.lengths("src"), ds.lengths("tgt")], 42, 5, 80).batches(0)]
    assert 1 in sizes and 5 in sizes  # a batch smaller than the world, and full ones

    _run(_train_cmd(spec, tmp_path / "one"))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    _run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "mcls.cli", "train",
          "--spec", json.dumps(spec), "--out", str(tmp_path / "two")])

    one = [r for r in read_jsonl(tmp_path / "one" / "train.jsonl") if r["event"] == "train"]
    two = [r for r in read_jsonl(tmp_path / "two" / "train.jsonl") if r["event"] == "train"]
    assert [r["step"] for r in one] == [r["step"] for r in two] and len(one) > 10
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-5)
    assert [r["tokens"] for r in two] == [r["tokens"] for r in one]
    v1 = [r["valid_loss"] for r in read_jsonl(tmp_path / "one" / "train.jsonl") if r["event"] == "valid"]
    v2 = [r["valid_loss"] for r in read_jsonl(tmp_path / "two" / "train.jsonl") if r["event"] == "valid"]
    np.testing.assert_allclose(v2, v1, rtol=1e-5)
    a, b = state_of(tmp_path / "one" / "final.pt"), state_of(tmp_path / "two" / "final.pt")
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5)
    last = state_of(tmp_path / "two" / "checkpoints" / "last.pt")
    assert last["sampler"]["world"] == 2 and len(last["rng"]) == 2
    assert not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])
    assert json.loads((tmp_path / "two" / "model.json").read_text())["world_size"] == 2
