"""Training building blocks: spec validation, collate, dataset join, bucketing sampler,
sharding, schedule, optimizer settings, loss."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from mcls.encoded import EncodedSplit
from mcls.errors import DataError, McLSError
from mcls.training import (BucketSampler, SplitData, WarmupLinearDecay, build_optimizer, collate,
                           cross_entropy_sum, lr_factor, parse_spec, shard)
from mcls.training.spec import numeric_diff
from test_training_support import make_features, make_rows, make_setup, write_encoded


# ------------------------------------------------------------------ spec
@pytest.fixture()
def spec(tmp_path):
    return make_setup(tmp_path)


def test_spec_defaults_filled(spec):
    s = parse_spec(spec)
    assert s["task"] == "ce"
    assert s["optim"]["eps"] == 1e-6 and s["optim"]["weight_decay"] == 0.0
    assert s["optim"]["betas"] == [0.9, 0.999]
    assert s["data"]["max_video_rows"] == 1024 and s["data"]["tgt_field"] == "sum"
    assert s["init_from"] is None and s["bf16"] is True


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.update(optm={}), "unknown key 'optm' (did you mean 'optim'?)"),
    (lambda s: s["optim"].update(lr=-1), "spec key 'optim.lr': expected a number > 0"),
    (lambda s: s["optim"].pop("epochs"), "spec key 'optim.epochs': missing"),
    (lambda s: s["data"].update(src_field="pt"), "spec key 'data.src_field': 'pt' is not allowed"),
    (lambda s: s["optim"].update(batch_size=None, max_tokens=None), "spec key 'optim.batch_size'"),
    (lambda s: s.update(stage=4), "spec key 'stage': 4 is not allowed"),
    (lambda s: s.update(device="gpu"), "spec key 'device'"),
    (lambda s: s.update(select="first"), "spec key 'select'"),
    (lambda s: s.update(seed=True), "spec key 'seed': expected an integer"),
    (lambda s: s["data"].update(valid=None), "spec key 'data.valid': null, but select is 'best'"),
    (lambda s: s["data"].update(tgt_vocab=3), "spec key 'data.tgt_vocab'"),
    (lambda s: s.update(init_from="x.pt"), "spec key 'init_from'"),
    (lambda s: s["optim"].update(betas=[0.9]), "spec key 'optim.betas'"),
])
def test_spec_errors_name_the_key(spec, mutate, message):
    mutate(spec)
    with pytest.raises(McLSError, match=re.escape(message)):
        parse_spec(spec)


def test_stage2_defaults_to_kd_which_is_not_there_yet(spec):
    from mcls.training.tasks import make_task

    s = parse_spec({**spec, "stage": 2})
    assert s["task"] == "kd"
    with pytest.raises(McLSError, match="'task': 'kd' is not implemented yet"):
        make_task(s)


def test_numeric_diff_ignores_device_and_threads(spec):
    a = parse_spec(spec)
    b = parse_spec({**spec, "threads": 7, "device": "cuda", "log_every": 3})
    assert numeric_diff(a, b) == []
    c = parse_spec({**spec, "optim": {**spec["optim"], "lr": 1.0}})
    assert numeric_diff(a, c) == ["optim.lr"]


# ------------------------------------------------------------------ collate
def test_collate_batch_format():
    items = [
        {"id": "a", "src": np.array([5, 6, 7, 1]), "tgt": np.array([8, 9, 1]),
         "video": np.ones((3, 2), np.float32)},
        {"id": "b", "src": np.array([4, 1]), "tgt": np.array([3, 1]), "video": 2 * np.ones((1, 2), np.float32)},
    ]
    b = collate(items)
    assert b["ids"] == ["a", "b"]
    assert b["src"].tolist() == [[5, 6, 7, 1], [4, 1, 0, 0]]
    assert b["tgt_out"].tolist() == [[8, 9, 1], [3, 1, 0]]
    assert b["tgt_in"].tolist() == [[1, 8, 9], [1, 3, 0]]
    assert b["src"].dtype == torch.long and b["video"].dtype == torch.float32
    assert b["video"].shape == (2, 3, 2)
    assert b["video_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert b["video"][1, 1:].abs().sum() == 0 and b["video"][1, 0].tolist() == [2.0, 2.0]
    st = b["stats"]
    assert (st["text_real"], st["text_padded"]) == (4 + 2 + 3 + 2, 8 + 6)
    assert (st["video_real"], st["video_padded"]) == (4, 6)


def test_collate_text_only_has_no_video():
    b = collate([{"id": "a", "src": np.array([5, 1]), "tgt": np.array([1])}])
    assert "video" not in b and "video_mask" not in b
    assert b["tgt_in"].tolist() == [[1]] and b["tgt_out"].tolist() == [[1]]


# ------------------------------------------------------------------ dataset
def test_split_data_joins_features_and_truncates(tmp_path):
    rows = make_rows(5)
    enc = EncodedSplit(write_encoded(tmp_path / "t.parquet", rows))
    feats = make_features([r["video_id"] for r in rows], dim=3, rows=(6, 9))
    ds = SplitData(enc, {"src": "src", "tgt": "sum"}, feats, max_video_rows=4)
    it = ds[2]
    assert it["id"] == rows[2]["video_id"]
    assert it["src"].tolist() == rows[2]["src"] and it["tgt"].tolist() == rows[2]["sum"]
    assert it["video"].shape == (4, 3)
    np.testing.assert_array_equal(it["video"], feats.table[it["id"]][:4])
    assert feats.calls[-1] == (it["id"], 4)
    assert ds.lengths("src").tolist() == [len(r["src"]) for r in rows]


def test_split_data_missing_features_skip_or_error(tmp_path):
    rows = make_rows(4)
    enc = EncodedSplit(write_encoded(tmp_path / "t.parquet", rows))
    feats = make_features([r["video_id"] for r in rows[1:]])
    ds = SplitData(enc, {"src": "en", "tgt": "sum"}, feats)
    assert len(ds) == 3 and ds.skipped == [rows[0]["video_id"]]
    assert ds[0]["id"] == rows[1]["video_id"]
    with pytest.raises(DataError, match=rows[0]["video_id"]):
        SplitData(enc, {"src": "en", "tgt": "sum"}, feats, missing="error")


def test_split_data_rejects_out_of_vocab_ids_and_null_fields(tmp_path):
    rows = make_rows(3, vocab=20)
    enc = EncodedSplit(write_encoded(tmp_path / "t.parquet", rows))
    ds = SplitData(enc, {"src": "en", "tgt": "sum"}, vocab_sizes={"src": 10, "tgt": 20})
    bad = next(i for i, r in enumerate(rows) if max(r["en"]) >= 10)
    with pytest.raises(DataError, match=f"{rows[bad]['video_id']}.*vocabulary of size 10"):
        ds[bad]
    rows[1]["src"] = None
    enc = EncodedSplit(write_encoded(tmp_path / "u.parquet", rows))
    with pytest.raises(DataError, match="no 'src' sequence"):
        SplitData(enc, {"src": "src", "tgt": "sum"})


# ------------------------------------------------------------------ sampler
def _lengths(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 400, n), rng.integers(3, 60, n)]


def test_sampler_covers_every_example_once_and_respects_limits():
    lens = _lengths()
    s = BucketSampler(lens, seed=3, batch_size=8, max_tokens=1500)
    for epoch in range(3):
        batches = s.batches(epoch)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(200))
        for b in batches:
            assert len(b) <= 8
            cost = len(b) * sum(int(x[b].max()) for x in lens)
            assert cost <= 1500 or len(b) == 1


def test_sampler_is_a_function_of_seed_and_epoch_and_reshuffles():
    lens = _lengths()
    a = BucketSampler(lens, seed=3, batch_size=8)
    b = BucketSampler(lens, seed=3, batch_size=8)
    for e in range(3):
        assert [x.tolist() for x in a.batches(e)] == [x.tolist() for x in b.batches(e)]
    assert [x.tolist() for x in a.batches(0)] != [x.tolist() for x in a.batches(1)]
    c = BucketSampler(lens, seed=4, batch_size=8)
    assert [x.tolist() for x in a.batches(0)] != [x.tolist() for x in c.batches(0)]


def test_sampler_bucketing_cuts_padding_waste():
    lens = _lengths(400)
    s = BucketSampler(lens, seed=0, batch_size=8)
    rng = np.random.default_rng(0)
    perm = rng.permutation(400)
    real = padded = 0
    for b in np.array_split(perm, 50):
        for x in lens:
            real += int(x[b].sum())
            padded += int(x[b].max()) * len(b)
    random_waste = 1 - real / padded
    assert s.padding_waste(0) < 0.5 * random_waste, (s.padding_waste(0), random_waste)


def test_sampler_oversized_example_is_a_batch_of_one():
    s = BucketSampler([np.array([10, 10, 500, 10])], seed=0, max_tokens=100)
    batches = s.batches(0)
    assert sorted(len(b) for b in batches) == [1, 3]
    assert s.oversized(0) == 1


def test_shard_splits_global_batch():
    gb = np.arange(7)
    parts = [shard(gb, r, 3) for r in range(3)]
    assert sorted(np.concatenate([p for p, _ in parts]).tolist()) == list(range(7))
    assert all(w == 1.0 for _, w in parts)
    part, w = shard(np.array([5]), 1, 2)
    assert part.tolist() == [5] and w == 0.0


# ------------------------------------------------------------------ optimisation
def test_lr_schedule_warmup_then_linear_decay_to_zero():
    w, t = 4, 12
    f = [lr_factor(i, w, t) for i in range(1, t + 1)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a > b for a, b in zip(f[3:], f[4:]))  # strictly decreasing after the peak
    assert f[-1] == pytest.approx(1 / 9) and lr_factor(t + 1, w, t) == 0.0
    diffs = np.diff(f[3:])
    assert np.allclose(diffs, diffs[0])  # linear
    assert lr_factor(1, 0, 10) == 1.0


def test_scheduler_sets_lr_and_round_trips():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([p], lr=1.5e-4)
    g = opt.param_groups[0]
    assert g["eps"] == 1e-6 and g["weight_decay"] == 0.0 and g["betas"] == (0.9, 0.999)
    assert isinstance(opt, torch.optim.AdamW)
    sch = WarmupLinearDecay(opt, 1.5e-4, warmup=2, total=10)
    sch.step()
    assert g["lr"] == pytest.approx(0.75e-4)
    state = sch.state_dict()
    other = WarmupLinearDecay(opt, 1.5e-4, warmup=2, total=10)
    other.load_state_dict(state)
    assert other.t == 1
    with pytest.raises(ValueError, match="schedule mismatch"):
        WarmupLinearDecay(opt, 1.5e-4, warmup=2, total=11).load_state_dict(state)


def test_cross_entropy_is_summed_over_real_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    target = torch.tensor([[1, 2, 0], [3, 0, 0]])
    s, n = cross_entropy_sum(logits, target)
    lp = logits.log_softmax(-1)
    manual = -(lp[0, 0, 1] + lp[0, 1, 2] + lp[1, 0, 3])
    assert n.item() == 3
    assert s.item() == pytest.approx(manual.item(), rel=1e-6)
    assert math.isclose((s / n).item(), manual.item() / 3, rel_tol=1e-6)
