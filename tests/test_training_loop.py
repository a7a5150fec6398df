"""The training loop in-process: overfitting, checkpoint contents, exact resume, restarts."""

from __future__ import annotations

import pytest
import torch

from mcls.cli import main as cli_main
from mcls.errors import McLSError
from mcls.training import CrossEntropyTask, Trainer, load_model, parse_spec
from mcls.training.checkpoint import MODEL_FORMAT, TRAIN_FORMAT
from test_training_support import (make_features, make_rows, make_setup, read_jsonl, state_of,
                                   write_encoded)


def _features_for(spec):
    from mcls.encoded import EncodedSplit

    ids = EncodedSplit(spec["data"]["train"]).video_ids + EncodedSplit(spec["data"]["valid"]).video_ids
    return make_features(ids, dim=6, seed=5)


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_overfits_two_examples(tmp_path):
    rows = make_rows(2, seed=9)
    path = write_encoded(tmp_path / "two.parquet", rows)
    spec = make_setup(tmp_path, sizes={"d_model": 16, "dropout": 0.0},
                      data={"train": str(path), "valid": str(path)},
                      optim={"lr": 1e-2, "warmup_steps": 0, "epochs": 250, "batch_size": 2, "clip_norm": 1.0},
                      checkpoint_every=10_000, log_every=50)
    out = Trainer(spec, tmp_path / "run").run()
    assert out["final_valid_loss"] < 0.05, out["final_valid_loss"]
    model, ckpt = load_model(tmp_path / "run" / "final.pt")
    from mcls.training.data import collate

    batch = collate([{"id": r["video_id"], "src": torch.tensor(r["en"]).numpy(), "tgt": torch.tensor(r["sum"]).numpy()}
                     for r in rows])
    with torch.no_grad():
        pred = model(batch).argmax(-1)
    assert torch.equal(pred[batch["tgt_out"] != 0], batch["tgt_out"][batch["tgt_out"] != 0])


def test_checkpoints_hold_everything_and_load_weights_only(tmp_path):
    spec = make_setup(tmp_path)
    feats = _features_for(spec)
    out = Trainer(spec, tmp_path / "run", features=feats).run()
    run = tmp_path / "run"
    last = state_of(run / "checkpoints" / "last.pt")  # weights_only=True
    assert last["format"] == TRAIN_FORMAT
    for key in ("model", "model_meta", "optimizer", "scheduler", "rng", "sampler", "step", "epoch", "best",
                "valid_loss", "spec", "code_version", "total_steps"):
        assert key in last, key
    assert last["step"] == last["total_steps"] == 18 and last["epoch"] == 3
    assert last["sampler"] == {"epoch": 3, "position": 0, "seed": 42, "world": 1}
    assert last["scheduler"]["t"] == 18 and last["optimizer"]["state"]
    rng = last["rng"][0]
    assert rng["torch"].dtype == torch.uint8 and len(rng["python"]["state"]) == 625
    assert rng["numpy"]["keys"].shape == (624,)
    assert last["spec"] == parse_spec(spec)
    assert last["model_meta"]["video_dim"] == 6 and last["model_meta"]["config"]["d"] == 16
    assert last["code_version"].startswith("0.")

    log = read_jsonl(run / "train.jsonl")
    train = [r for r in log if r["event"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 19))
    for r in train:
        for k in ("loss", "lr", "tokens_per_s", "pad_waste", "video_pad_waste", "grad_norm"):
            assert r[k] is not None, k
        assert 0 <= r["pad_waste"] < 1 and 0 <= r["video_pad_waste"] < 1
    assert any(r["video_pad_waste"] > 0 for r in train)
    assert train[-1]["lr"] == pytest.approx(3e-3 / 14)  # last update of the linear decay
    epochs = [r for r in log if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and all(0 <= r["pad_waste"] < 1 for r in epochs)
    valid = [r for r in log if r["event"] == "valid"]
    assert len(valid) == 3
    best = min(valid, key=lambda r: r["valid_loss"])
    best_ckpt = state_of(run / "checkpoints" / "best.pt")
    assert best_ckpt["step"] == best["step"] == out["best"]["step"]
    assert best_ckpt["best"]["valid_loss"] == pytest.approx(best["valid_loss"])

    final = state_of(run / "final.pt")
    assert final["format"] == MODEL_FORMAT and final["selected"] == "best"
    assert "optimizer" not in final and "rng" not in final
    _assert_same_weights(final["model"], best_ckpt["model"])
    model, _ = load_model(run / "final.pt")
    assert not model.training and model.config.video_dim == 6
    import json

    summary = json.loads((run / "model.json").read_text())
    assert summary["selected_step"] == best["step"] and summary["parameters"] > 0


def test_select_last(tmp_path):
    spec = make_setup(tmp_path, select="last", optim={"epochs": 2})
    spec["data"]["valid"] = None
    Trainer(spec, tmp_path / "run").run()
    final = state_of(tmp_path / "run" / "final.pt")
    last = state_of(tmp_path / "run" / "checkpoints" / "last.pt")
    assert final["selected"] == "last" and final["step"] == last["step"] == 12
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    _assert_same_weights(final["model"], last["model"])


class CrashAfter(CrossEntropyTask):
    """Raises in the middle of training step n + 1 (after its forward pass)."""

    def __init__(self, spec, n):
        super().__init__(parse_spec(spec))
        self.n, self.calls = n, 0

    def loss(self, model, batch):
        out = super().loss(model, batch)
        if model.training:
            self.calls += 1
            if self.calls > self.n:
                raise RuntimeError("simulated crash")
        return out


@pytest.mark.parametrize("crash_after", [9, 13])  # last checkpoint mid-epoch (8) / at an epoch end (12)
def test_resume_after_crash_is_exact(tmp_path, crash_after):
    spec = make_setup(tmp_path)
    feats = _features_for(spec)
    Trainer(spec, tmp_path / "ref", features=feats).run()

    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(spec, tmp_path / "run", features=feats, task=CrashAfter(spec, crash_after)).run()
    partial = state_of(tmp_path / "run" / "checkpoints" / "last.pt")
    assert partial["step"] == {9: 8, 13: 12}[crash_after]
    assert (partial["sampler"]["epoch"], partial["sampler"]["position"]) == {9: (1, 2), 13: (2, 0)}[crash_after]
    assert not (tmp_path / "run" / "final.pt").exists()
    leftover = tmp_path / "run" / "checkpoints" / ".last.pt.k1ll3d.tmp"  # as a kill mid-write leaves
    leftover.write_bytes(b"partial")
    Trainer(spec, tmp_path / "run", features=feats, resume="require").run()
    assert not leftover.exists()

    _assert_same_weights(state_of(tmp_path / "ref" / "final.pt")["model"], state_of(tmp_path / "run" / "final.pt")["model"])
    ref_last = state_of(tmp_path / "ref" / "checkpoints" / "last.pt")
    run_last = state_of(tmp_path / "run" / "checkpoints" / "last.pt")
    for k, v in ref_last["optimizer"]["state"].items():
        _assert_same_weights(v, run_last["optimizer"]["state"][k])
    assert torch.equal(ref_last["rng"][0]["torch"], run_last["rng"][0]["torch"])

    def strip(recs):  # timings differ; everything else must not
        return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "samples_per_s", "seconds", "data_seconds", "cpu_seconds")} for r in recs]

    assert strip(read_jsonl(tmp_path / "run" / "train.jsonl")) == strip(read_jsonl(tmp_path / "ref" / "train.jsonl"))


def test_changed_spec_starts_afresh_or_fails_with_require(tmp_path):
    spec = make_setup(tmp_path, optim={"epochs": 1})
    Trainer(spec, tmp_path / "run").run()
    changed = make_setup(tmp_path, optim={"epochs": 1, "lr": 1e-3})
    with pytest.raises(McLSError, match="different spec \\(keys: optim.lr\\)"):
        Trainer(changed, tmp_path / "run", resume="require").run()
    Trainer(changed, tmp_path / "run").run()
    assert (tmp_path / "run" / "checkpoints.stale" / "last.pt").exists()
    assert state_of(tmp_path / "run" / "final.pt")["spec"]["optim"]["lr"] == 1e-3
    # same spec, other thread count: a finished run is picked up, not retrained
    again = Trainer({**changed, "threads": 2}, tmp_path / "run")
    again.run()
    assert read_jsonl(tmp_path / "run" / "train.jsonl")[-1]["step"] == 6


def test_cli_reports_bad_spec_by_key(tmp_path, capsys):
    spec = make_setup(tmp_path)
    spec["optim"]["clip_norm"] = "big"
    import json

    rc = cli_main(["train", "--spec", json.dumps(spec), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "spec key 'optim.clip_norm': expected a number" in capsys.readouterr().err
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({**spec, "optim": {**spec["optim"], "clip_norm": 0.1}, "data": {**spec["data"], "train": str(tmp_path / "nope.parquet")}}))
    rc = cli_main(["train", "--spec", str(f), "--out", str(tmp_path / "o")])
    assert rc == 2 and "nope.parquet not found" in capsys.readouterr().err


def test_max_tokens_batches_and_max_steps(tmp_path):
    spec = make_setup(tmp_path, optim={"batch_size": None, "max_tokens": 40, "max_steps": 9, "epochs": 5})
    out = Trainer(spec, tmp_path / "run").run()
    assert out["steps"] == 9 and out["total_steps"] == 9
    log = read_jsonl(tmp_path / "run" / "train.jsonl")
    train = [r for r in log if r["event"] == "train"]
    assert len(train) == 9 and train[-1]["lr"] > 0
    last = state_of(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["sampler"]["position"] > 0 or last["sampler"]["epoch"] > 0


TINY = {"d_model": 16, "ffn_dim": 32, "heads": 2, "enc_layers": 1, "dec_layers": 2, "dropout": 0.1}


@pytest.mark.parametrize("preset, switches, video", [
    ("ncls", {"share_src_tgt_embedding": True}, False),
    ("vdf", {"share_src_tgt_embedding": True}, True),
])
def test_real_presets_train_and_reload(tmp_path, preset, switches, video):
    pytest.importorskip("mcls.model")
    spec = make_setup(tmp_path, model=preset, switches=switches, sizes=TINY, optim={"epochs": 6, "lr": 3e-3},
                      log_every=6)
    feats = _features_for(spec) if video else None
    Trainer(spec, tmp_path / "run", features=feats).run()
    train = [r for r in read_jsonl(tmp_path / "run" / "train.jsonl") if r["event"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"] - 0.3
    assert (train[0]["video_pad_waste"] is not None) == video
    model, ckpt = load_model(tmp_path / "run" / "final.pt")
    assert model.config.name == preset and model.config.share_src_tgt_embedding
    assert ckpt["model_meta"]["config"]["d_model"] == 16
    try:
        from mcls.decoding.cli import load_checkpoint_model
    except ImportError:
        return
    other, _ = load_checkpoint_model(tmp_path / "run" / "final.pt")  # what `mcls decode` does
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_video_model_without_features_is_a_spec_error(tmp_path):
    pytest.importorskip("mcls.model")
    spec = make_setup(tmp_path, model="vdf", sizes=TINY)
    with pytest.raises(McLSError, match="'data.features': model 'vdf' reads video"):
        Trainer(spec, tmp_path / "run").run()


def test_loader_workers_change_nothing(tmp_path):
    spec = make_setup(tmp_path, optim={"epochs": 2})
    feats = _features_for(spec)
    Trainer(spec, tmp_path / "w0", features=feats).run()
    Trainer({**spec, "data": {**spec["data"], "workers": 2}}, tmp_path / "w2", features=feats).run()
    _assert_same_weights(state_of(tmp_path / "w0" / "final.pt")["model"], state_of(tmp_path / "w2" / "final.pt")["model"])


def test_features_from_a_real_feature_store(tmp_path):
    store_mod = pytest.importorskip("mcls.video.store")
    pytest.importorskip("mcls.model")
    spec = make_setup(tmp_path, model="vdf", sizes=TINY, optim={"epochs": 1})
    feats = _features_for(spec)
    shard = tmp_path / "features" / "shards" / "shard-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    writer = store_mod.ShardWriter(shard, feats.dim, {"backbone": "test"})
    for vid, arr in feats.table.items():
        if vid != "v0003":  # one training video without features: skipped and counted
            writer.add(vid, arr, range(len(arr)), range(1, len(arr) + 1))
    writer.close()
    store_mod.merge_shards([shard], tmp_path / "features" / "store.json")
    spec["data"]["features"] = str(tmp_path / "features" / "store.json")
    spec["data"]["max_video_rows"] = 3
    out = Trainer(spec, tmp_path / "run").run()
    assert out["skipped_videos"] == 1 and out["skipped_first"] == ["v0003"]
    assert out["train_rows"] == 23 and out["model_meta"]["video_dim"] == 6
    train = [r for r in read_jsonl(tmp_path / "run" / "train.jsonl") if r["event"] == "train"]
    assert all(r["video_pad_waste"] is not None for r in train)
    spec["data"]["missing_features"] = "error"
    with pytest.raises(McLSError, match="v0003"):
        Trainer(spec, tmp_path / "run2").run()
