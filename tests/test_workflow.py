"""The Snakemake workflow: lint, dry run of the demo DAG, and a real run of the data DAG."""

from __future__ import annotations

import re
import subprocess

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.snakemake


def snakemake(args, env, cwd=REPO, timeout=600):
    return subprocess.run(["snakemake", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_lint_passes(mcls_env):
    proc = snakemake(["--lint"], mcls_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_dry_run_of_the_demo_dag(mcls_env):
    proc = snakemake(["-n", "--forceall", "--quiet", "rules"], mcls_env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    for rule in ("demo_corpus", "ingest", "stats", "vocab_en", "vocab_src", "encode", "features_extract",
                 "features_merge", "train", "decode", "evaluate", "table_backbones", "table_stage1", "all"):
        assert rule in counts, f"rule {rule} missing from the demo DAG:\n{out}"
    assert counts["encode"] == "4"
    models = yaml.safe_load((REPO / "config.yaml").read_text())["models"]
    assert counts["train"] == str(len(models) + 1)   # VDF stage 1 + the MCLS-only models of config.yaml


def _tiny_config(tmp_path) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["run"] = "tiny"
    cfg["data"]["root"] = "results/tiny/corpus"
    cfg["data"]["demo"].update(pretrain=6, train=3, val=2, test=2, min_frames=16, max_frames=17)
    return cfg


def test_data_dag_runs_and_params_change_reruns_only_downstream(tmp_path, mcls_env):
    cfg = _tiny_config(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    targets = [f"results/tiny/encoded/{s}.parquet" for s in ("pretrain", "train", "val", "test")] + [
        "results/tiny/stats/table1.md"]
    # targets first: --configfile takes several values
    args = [*targets, "--cores", "2", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(tmp_path / "c.yaml")]
    proc = snakemake(args, mcls_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    t = pq.read_table(tmp_path / "results/tiny/encoded/train.parquet")
    assert t.num_rows == 3 and t.column("src_len").to_pylist()[0] > 10
    assert (tmp_path / "results/tiny/stats/table1.md").read_text().count("| 3 | 2 | 2 |") == 1
    # change a parameter of the vocabulary: vocab + encode rerun, the corpus and ingest do not
    cfg["vocab"]["min_count"] = 2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake([*args, "-n", "--quiet", "rules"], mcls_env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    assert "vocab_en" in counts and "encode" in counts
    assert "demo_corpus" not in counts and "ingest" not in counts and "stats" not in counts


def test_whole_demo_dag_on_a_tiny_corpus(tmp_path, mcls_env):
    """corpus -> ingest -> features -> stage 1 + Table III models -> decode -> metrics -> tables."""
    cfg = _tiny_config(tmp_path)
    cfg["data"]["demo"].update(pretrain=6, train=4, val=2, test=2, min_frames=16, max_frames=16)
    cfg["features"].update(shards=1, threads=1)
    cfg["model"].update(d_model=16, ffn_dim=32, heads=2, enc_layers=1, dec_layers=1, rnn_emb=8, rnn_hidden=8)
    cfg["train"].update(epochs=2, warmup_steps=1, threads=1, stages={})
    cfg["decode"].update(beam=2, max_len=8)
    cfg["eval"]["meteor"] = False
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--cores", "2", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(tmp_path / "c.yaml")]
    proc = snakemake(args, mcls_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "results/tiny/tables/table3.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in table] == ["Method", "S2S", "NCLS", "VideoRNN", "MT", "HA", "MFFG", "VDF"]
    import json
    m = json.loads((tmp_path / "results/tiny/eval/vdf/stage1/test/metrics.json").read_text())
    assert set(m) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "rougeL_how2", "meteor", "cider"}
    hyps = (tmp_path / "results/tiny/eval/ncls/mcls/test/hypotheses.jsonl").read_text().splitlines()
    assert len(hyps) == 2 and all(json.loads(h)["reference"] for h in hyps)
    # NCLS reads no video: its training job does not depend on the feature store
    runs = {m: json.loads((tmp_path / f"results/tiny/models/{m}/mcls/model.json").read_text()) for m in ("ncls", "vdf")}
    assert runs["ncls"]["spec"]["data"]["features"] is None
    assert runs["vdf"]["spec"]["data"]["features"] == "results/tiny/features/store.json"
    assert runs["vdf"]["skipped_videos"] == 0
    # a decoding setting reruns decoding, scoring and tables only — no training, no features
    cfg["decode"]["beam"] = 3
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake([*args, "-n", "--quiet", "rules"], mcls_env)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, re.M))
    n_models = len(cfg["models"])
    assert counts.get("decode") == str(n_models + 1) and counts.get("evaluate") == str(n_models + 1)
    assert "train" not in counts and "features_extract" not in counts and "ingest" not in counts
    # a training setting of the MCLS stage reruns those models, not stage 1
    cfg["decode"]["beam"] = 2
    cfg["train"]["stages"] = {"mcls": {"epochs": 3}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake([*args, "-n", "--quiet", "rules"], mcls_env)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, re.M))
    assert counts.get("train") == str(n_models) and counts.get("decode") == str(n_models)


def test_multi_gpu_training_goes_through_torchrun(tmp_path, mcls_env):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["train"].update(gpus=2, device="cuda")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(["-n", "-p", "--forceall", "--configfile", str(tmp_path / "c.yaml")], mcls_env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "torchrun --standalone --nproc_per_node 2 -m mcls.cli train --spec" in out
    assert "gpu=2" in out


def test_zh_demo_preset_builds_a_table_iv_dag(mcls_env):
    proc = snakemake(["-n", "--forceall", "--quiet", "rules", "--configfile", "resources/presets/demo-zh2en.yaml"], mcls_env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "table_backbones" in out
    proc = snakemake(["-n", "--forceall", "-p", "--configfile", "resources/presets/demo-zh2en.yaml"], mcls_env)
    assert "results/demo-zh/tables/table4.md" in proc.stdout + proc.stderr
    assert "--lang zh" in proc.stdout + proc.stderr
