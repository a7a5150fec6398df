"""Results tables from metrics.json files."""

from __future__ import annotations

import json

import pytest

from mcls.cli import main as cli_main
from mcls.errors import McLSError
from mcls.tables import load_rows, render

KEYS = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "rougeL_how2", "meteor", "cider"]


def _metrics(tmp_path, name, base, meteor=None):
    m = {k: base + i for i, k in enumerate(KEYS)}
    m["cider"] = base / 100
    if meteor is not None:
        m["meteor"] = meteor
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(m))
    return p


def test_table_layout_and_bold_best(tmp_path):
    a = _metrics(tmp_path, "a", 40.0)
    b = _metrics(tmp_path, "b", 41.5, meteor="unavailable: java not found")
    rc = cli_main(["table", "--row", f"NCLS={a}", "--row", f"VDF={b}", "--title", "Table III", "--out", str(tmp_path / "t3")])
    assert rc == 0
    tsv = (tmp_path / "t3.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == ["Method", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-1", "ROUGE-2", "ROUGE-L", "METEOR", "CIDEr"]
    assert tsv[1].split("\t") == ["NCLS", "40.00", "41.00", "42.00", "43.00", "44.00", "45.00", "46.00", "48.00", "0.400"]
    assert tsv[2].split("\t")[8] == "n/a"
    md = (tmp_path / "t3.md").read_text()
    assert "| VDF | **41.50** |" in md and "| NCLS | 40.00 |" in md
    assert "**48.00**" in md  # METEOR best is NCLS since VDF's is unavailable
    assert "VDF: meteor unavailable: java not found" in md


def test_bad_rows(tmp_path):
    with pytest.raises(McLSError, match="expected NAME=metrics.json"):
        load_rows(["no-equals-sign"])
    with pytest.raises(McLSError, match="not found"):
        load_rows([f"X={tmp_path / 'missing.json'}"])
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"bleu1": 1}))
    with pytest.raises(McLSError, match="lacks metrics"):
        load_rows([f"X={p}"])


def test_render_single_row():
    md, tsv = render([("VDF", {k: 1.0 for k in KEYS})], "T")
    assert md.startswith("T\n") and tsv.count("\n") == 2
