"""Tables I and II computed from split tables."""

from __future__ import annotations

from mcls.cli import main as cli_main
from mcls.ingest import ingest_how2_mcls
from mcls.stats import compute

from conftest import small_corpus, write_mcls_layout


def test_tables_one_and_two(tmp_path):
    root = write_mcls_layout(tmp_path / "root", small_corpus())
    ingest_how2_mcls(root, "pt", "npy", tmp_path / "data")
    (h1, r1), (h2, r2) = compute(tmp_path / "data", "pt")
    assert r1 == [["How2-MCLS: Video+Pt2En", "2", "1", "1"], ["How2-MS: Video+En2En", "2", "-", "-"]]
    col = {name: i for i, name in enumerate(h2)}
    rows = {r[0]: r for r in r2}
    # Pt transcripts of MCLS: "olá ." "o pincel pequeno ." "dobre a camisa ." "lave o cachorro ." -> 2,4,4,4 tokens
    pt = col["Pt transcript (MCLS)"]
    assert rows["Total number of texts"][pt] == "4"
    assert rows["Average text length"][pt] == "3.5"
    assert rows["Maximum text length"][pt] == "4" and rows["Minimum text length"][pt] == "2"
    assert rows["Total number of sentences"][pt] == "4" and rows["Total number of words"][pt] == "14"
    ms = col["En transcript (MS)"]
    assert rows["Total number of texts"][ms] == "2" and rows["Total number of words"][ms] == "10"
    rc = cli_main(["stats", "--data", str(tmp_path / "data"), "--src-lang", "pt", "--out", str(tmp_path / "s")])
    assert rc == 0
    assert (tmp_path / "s" / "table1.tsv").read_text().splitlines()[1] == "How2-MCLS: Video+Pt2En\t2\t1\t1"
    assert "| How2-MS: Video+En2En | 2 | - | - |" in (tmp_path / "s" / "table1.md").read_text()
