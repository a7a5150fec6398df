"""Ingest How2 data into one parquet table per split (docs/DESIGN.md, SPEC §1.1).

Two input layouts:

* ``how2-mcls`` — the How2-MCLS release: ``{split}_action.txt`` (video ids),
  ``{split}_art_en.txt``, ``{split}_art_<src>.txt`` (absent for pretrain), ``{split}_sum.txt``,
  one line per video, line *i* of every file is the same video; features in
  ``video_action_features/<id>.npy`` (or raw videos in ``videos/<id>.<ext>``).
* ``how2-300h`` — the official How2 300h MT release ``data/{train,val,dev5}/{id,text.en,text.<src>}``
  (segment ids ``VIDEOID_N``, joined per video in order of N) plus a summaries file and a
  How2-MS transcripts file, both ``<video_id> <text>`` per line. How2-MCLS = MT videos that
  have a summary, in the official partition (train/val/dev5 → train/val/test); How2-MS
  (``pretrain``) = summarized videos not in How2-MCLS.

Everything is validated while reading (line counts, empty lines, bytes that are not UTF-8,
duplicate ids within and across splits, missing or unreadable features); the first problem
raises a `DataError` naming the file, the line and what to do. Tables are streamed in row
groups (memory flat in corpus size) into temporary files that are renamed into place only
when every split succeeded, so a failed ingest leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import code_version
from .atomic import atomic_path, write_json
from .errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("pretrain", "train", "val", "test")
MCLS_SPLITS = ("train", "val", "test")
OFFICIAL_300H = {"train": "train", "val": "val", "test": "dev5"}
VIDEO_EXTS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
ROW_GROUP = 8192

TABLE_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("transcript_en", pa.string()),
    ("transcript_src", pa.string()),
    ("summary", pa.string()),
    ("media_path", pa.string()),
])

# YouTube ids are 11 characters of [A-Za-z0-9_-]; How2 uses them. Be a little lenient.
_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# ----------------------------------------------------------------------------------------
# line reading with validation

def count_lines(path: Path) -> int:
    """Number of lines, counting a final line without a trailing newline."""
    n = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (0 if last == b"\n" else 1)


def read_lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) for every line; reject bad bytes and empty lines by name."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: bytes that are not UTF-8 at column {exc.start + 1} "
                    f"({raw[max(0, exc.start - 10):exc.start + 10]!r}); re-encode the file as UTF-8 "
                    f"(e.g. `iconv -f latin1 -t utf-8`) or fix that line"
                ) from None
            text = text.strip()
            if not text:
                raise DataError(
                    f"{path}:{lineno}: empty line where a {what} is expected; every video needs one — "
                    f"fill the line or remove that video's line from every file of the split"
                )
            yield lineno, text


def check_video_id(vid: str, path: Path, lineno: int) -> None:
    if not _VIDEO_ID.match(vid):
        raise DataError(
            f"{path}:{lineno}: {vid!r} is not a video id (expected a YouTube-style id of letters, "
            f"digits, '-' and '_'); is this the right file?"
        )


# ----------------------------------------------------------------------------------------
# media (features or raw videos)

def check_npy(path: Path, vid: str) -> None:
    """Check that `path` is a readable (k, D) float .npy without loading its data."""
    if not path.exists():
        raise DataError(
            f"video {vid}: feature file {path} is missing; every video of the split needs "
            f"video_action_features/{vid}.npy (download the How2 action features, or set data.media: none)"
        )
    try:
        with open(path, "rb") as fh:
            shape, dtype, header_end = _npy_header(fh)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user error
        raise DataError(f"video {vid}: feature file {path} is not a readable .npy ({exc}); re-download it") from None
    if len(shape) != 2 or shape[0] < 1 or dtype.kind != "f":
        raise DataError(
            f"video {vid}: feature file {path} holds a {dtype} array of shape {shape}; expected float (k, D) "
            f"with k >= 1 clips"
        )
    size = path.stat().st_size
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if size - header_end < nbytes:
        raise DataError(
            f"video {vid}: feature file {path} is truncated ({size - header_end} data bytes, "
            f"{nbytes} needed for shape {shape}); re-download it"
        )


def _npy_header(fh) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, data offset) of an open .npy file, reading the header only."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, _fortran, dtype = fmt.read_array_header_1_0(fh)
    else:
        shape, _fortran, dtype = fmt.read_array_header_2_0(fh)
    return shape, dtype, fh.tell()


class VideoIndex:
    """Finds raw videos ``<dir>/<id>.<ext>`` with one directory listing instead of many stats."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.files: dict[str, Path] = {}
        if directory.is_dir():
            for entry in os.scandir(directory):
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() in VIDEO_EXTS:
                    self.files.setdefault(stem, Path(entry.path))

    def find(self, vid: str) -> Path:
        p = self.files.get(vid)
        if p is None:
            raise DataError(
                f"video {vid}: no raw video {self.dir}/{vid}.{{{','.join(e[1:] for e in VIDEO_EXTS)}}}; "
                f"add the file, or set data.media: npy / none"
            )
        return p


@dataclass
class MediaResolver:
    kind: str                # npy | video | none
    npy_dir: Path | None = None
    video_dir: Path | None = None

    def __post_init__(self):
        if self.kind not in ("npy", "video", "none"):
            raise DataError(f"unknown media kind {self.kind!r} (allowed: npy, video, none)")
        if self.kind == "npy" and (self.npy_dir is None or not self.npy_dir.is_dir()):
            raise DataError(f"feature directory {self.npy_dir} not found (expected <root>/video_action_features/)")
        if self.kind == "video":
            if self.video_dir is None or not self.video_dir.is_dir():
                raise DataError(f"video directory {self.video_dir} not found (expected <root>/videos/)")
            self._videos = VideoIndex(self.video_dir)

    def resolve(self, vid: str) -> str | None:
        if self.kind == "none":
            return None
        if self.kind == "npy":
            p = self.npy_dir / f"{vid}.npy"
            check_npy(p, vid)
            return str(p.resolve())
        return str(self._videos.find(vid).resolve())


# ----------------------------------------------------------------------------------------
# table writing

class SplitWriter:
    """Buffers rows and writes them to a parquet file in row groups."""

    def __init__(self, path: Path, split: str, meta: dict[str, str]):
        md = {**meta, "mcls.split": split}
        self.schema = TABLE_SCHEMA.with_metadata(md)
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.rows: dict[str, list] = {n: [] for n in TABLE_SCHEMA.names}
        self.count = 0

    def add(self, vid: str, en: str, src: str | None, summary: str, media: str | None) -> None:
        r = self.rows
        r["video_id"].append(vid)
        r["transcript_en"].append(en)
        r["transcript_src"].append(src)
        r["summary"].append(summary)
        r["media_path"].append(media)
        self.count += 1
        if len(r["video_id"]) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        if self.rows["video_id"]:
            self.writer.write_table(pa.Table.from_pydict(self.rows, schema=self.schema))
            self.rows = {n: [] for n in TABLE_SCHEMA.names}

    def close(self) -> None:
        self.flush()
        self.writer.close()


class IdRegistry:
    """Rejects a video id seen before in any split, naming both places."""

    def __init__(self):
        self.seen: dict[str, str] = {}

    def add(self, vid: str, where: str) -> None:
        prev = self.seen.get(vid)
        if prev is not None:
            raise DataError(
                f"video {vid} appears twice: {prev} and {where}; a video must belong to exactly one "
                f"split once — remove the duplicate line from every file of its split"
            )
        self.seen[vid] = where


# ----------------------------------------------------------------------------------------
# How2-MCLS release layout

def mcls_files(root: Path, split: str, src_lang: str) -> dict[str, Path]:
    files = {
        "ids": root / f"{split}_action.txt",
        "en": root / f"{split}_art_en.txt",
        "summary": root / f"{split}_sum.txt",
    }
    if split != "pretrain":
        files["src"] = root / f"{split}_art_{src_lang}.txt"
    return files


def _ingest_mcls_split(root: Path, split: str, src_lang: str, media: MediaResolver,
                       writer: SplitWriter, ids: IdRegistry) -> None:
    files = mcls_files(root, split, src_lang)
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise DataError(
            f"split {split}: missing file(s) {', '.join(missing)}; the How2-MCLS layout needs "
            f"{', '.join(p.name for p in files.values())} in {root}"
        )
    counts = {k: count_lines(p) for k, p in files.items()}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{files[k].name}: {n}" for k, n in counts.items())
        raise DataError(
            f"split {split}: the files have different numbers of lines ({detail}); line i of every "
            f"file must be the same video — find the missing or extra line"
        )
    readers = {
        "ids": read_lines(files["ids"], "video id"),
        "en": read_lines(files["en"], "English transcript"),
        "summary": read_lines(files["summary"], "summary"),
    }
    if "src" in files:
        readers["src"] = read_lines(files["src"], f"{src_lang} transcript")
    for (lineno, vid), (_, en), (_, summ), *rest in zip(readers["ids"], readers["en"], readers["summary"],
                                                        *([readers["src"]] if "src" in readers else [])):
        vid = vid.strip()
        check_video_id(vid, files["ids"], lineno)
        ids.add(vid, f"{files['ids'].name} line {lineno}")
        src = rest[0][1] if rest else None
        writer.add(vid, en, src, summ, media.resolve(vid))


def ingest_how2_mcls(root: Path, src_lang: str, media_kind: str, out_dir: Path) -> dict:
    media = MediaResolver(media_kind, root / "video_action_features", root / "videos")
    meta = _table_meta("how2-mcls", src_lang, media_kind)

    def fill(writers: dict[str, SplitWriter]) -> None:
        ids = IdRegistry()
        for split in SPLITS:
            _ingest_mcls_split(root, split, src_lang, media, writers[split], ids)

    return _write_splits(out_dir, meta, fill, source=str(root))


# ----------------------------------------------------------------------------------------
# How2 300h official layout

def read_keyed_file(path: Path, what: str) -> Iterator[tuple[int, str, str]]:
    """Lines ``<video_id><TAB or space><text>`` → (line number, id, text)."""
    for lineno, line in read_lines(path, f"'<video_id> <{what}>' line"):
        parts = line.split("\t", 1) if "\t" in line else line.split(None, 1)
        if len(parts) != 2 or not parts[1].strip():
            raise DataError(f"{path}:{lineno}: expected '<video_id> <{what}>', got {line[:80]!r}")
        vid = parts[0].strip()
        check_video_id(vid, path, lineno)
        yield lineno, vid, parts[1].strip()


def read_official_ids(splits_dir: Path, official: str) -> list[str]:
    path = splits_dir / official / "id"
    if not path.exists():
        raise DataError(f"official split ids {path} not found (expected <splits_dir>/{{train,val,dev5}}/id)")
    return [t for _, t in read_lines(path, "segment id")]


# How2 segment ids are an 11-character YouTube id, '_', and the segment number; merged
# segments carry several numbers ("00dWJ4YRRSI_0_1"). YouTube ids may themselves contain '_'.
_SEGMENT = re.compile(r"^([A-Za-z0-9_-]{11})_(\d+(?:_\d+)*)$")
_SEGMENT_ANY = re.compile(r"^([A-Za-z0-9_-]+?)_(\d+)$")


def split_segment_id(seg: str, path: Path, lineno: int) -> tuple[str, tuple[int, ...]]:
    """(video id, segment order key) of a How2 segment id ``VIDEOID_N`` or ``VIDEOID_N_M``."""
    m = _SEGMENT.match(seg) or _SEGMENT_ANY.match(seg)
    if not m:
        raise DataError(f"{path}:{lineno}: {seg!r} is not a How2 segment id VIDEOID_N")
    return m.group(1), tuple(int(x) for x in m.group(2).split("_"))


def read_300h_split(data_dir: Path, official: str, src_lang: str) -> dict[str, tuple[str, str]]:
    """Segments of one official split joined per video in order of N: id → (en, src)."""
    d = data_dir / official
    files = {"id": d / "id", "en": d / "text.en", "src": d / f"text.{src_lang}"}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise DataError(f"How2 300h split {official}: missing {', '.join(missing)}")
    counts = {k: count_lines(p) for k, p in files.items()}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{files[k]}: {n}" for k, n in counts.items())
        raise DataError(f"How2 300h split {official}: files differ in line count ({detail}); line i of each is the same segment")
    segs: dict[str, list[tuple[tuple[int, ...], str, str]]] = {}
    seen: dict[str, int] = {}
    for (lineno, seg), (_, en), (_, src) in zip(read_lines(files["id"], "segment id"),
                                                read_lines(files["en"], "English segment"),
                                                read_lines(files["src"], f"{src_lang} segment")):
        if seg in seen:
            raise DataError(f"{files['id']}:{lineno}: segment {seg} already at line {seen[seg]}; remove the duplicate")
        seen[seg] = lineno
        vid, n = split_segment_id(seg, files["id"], lineno)
        segs.setdefault(vid, []).append((n, en, src))
    out = {}
    for vid, parts in segs.items():
        parts.sort(key=lambda p: p[0])
        out[vid] = (" ".join(p[1] for p in parts), " ".join(p[2] for p in parts))
    return out


def ingest_how2_300h(root: Path, src_lang: str, media_kind: str, out_dir: Path, *,
                     splits_dir: Path | None, summaries: Path, ms_transcripts: Path | None,
                     features_dir: Path | None = None, videos_dir: Path | None = None) -> dict:
    data_dir = root / "data" if (root / "data").is_dir() else root
    media = MediaResolver(media_kind, features_dir or root / "features", videos_dir or root / "videos")
    meta = _table_meta("how2-300h", src_lang, media_kind)
    if not summaries or not Path(summaries).exists():
        raise DataError(f"summaries file {summaries} not found (data.how2_300h.summaries: '<video_id> <summary>' per line)")
    summ: dict[str, str] = {}
    for lineno, vid, text in read_keyed_file(Path(summaries), "summary"):
        if vid in summ:
            raise DataError(f"{summaries}:{lineno}: second summary for video {vid}; keep one")
        summ[vid] = text

    def fill(writers: dict[str, SplitWriter]) -> None:
        ids = IdRegistry()
        mcls_videos: set[str] = set()
        for split, official in OFFICIAL_300H.items():
            videos = read_300h_split(data_dir, official, src_lang)
            if splits_dir is not None:
                ids_file = Path(splits_dir) / official / "id"
                official_videos = {split_segment_id(s, ids_file, i)[0]
                                   for i, s in enumerate(read_official_ids(Path(splits_dir), official), 1)}
                if set(videos) != official_videos:
                    extra = sorted(set(videos) - official_videos)[:3]
                    lack = sorted(official_videos - set(videos))[:3]
                    raise DataError(
                        f"How2 300h split {official}: videos differ from the official partition in {splits_dir} "
                        f"(not official: {extra}, missing: {lack}); use the official release files"
                    )
            kept = 0
            for vid in sorted(videos):
                if vid not in summ:
                    continue
                en, src = videos[vid]
                ids.add(vid, f"How2 300h {official}")
                writers[split].add(vid, en, src, summ[vid], media.resolve(vid))
                mcls_videos.add(vid)
                kept += 1
            log.info("How2-MCLS %s: %d of %d %s videos have summaries", split, kept, len(videos), official)
        if ms_transcripts is None:
            log.warning("no data.how2_300h.ms_transcripts: How2-MS (pretrain) is empty, stage 1 cannot run")
            return
        for lineno, vid, text in read_keyed_file(Path(ms_transcripts), "transcript"):
            if vid in mcls_videos:
                continue  # How2-MS excludes How2-MCLS videos
            if vid not in summ:
                continue  # only summarized videos
            ids.add(vid, f"{Path(ms_transcripts).name} line {lineno}")
            writers["pretrain"].add(vid, text, None, summ[vid], media.resolve(vid))
        # zero overlap between How2-MS and How2-MCLS is asserted on the written tables (overlap_check)

    return _write_splits(out_dir, meta, fill, source=str(root))


# ----------------------------------------------------------------------------------------
# shared

def _table_meta(fmt: str, src_lang: str, media: str) -> dict[str, str]:
    return {"mcls.format": fmt, "mcls.src_lang": src_lang, "mcls.media": media, "mcls.code_version": code_version()}


def _write_splits(out_dir: Path, meta: dict[str, str], fill, source: str) -> dict:
    """Run `fill(writers)` with one writer per split into temporaries; rename all on success."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        tmps = {s: stack.enter_context(atomic_path(out_dir / f"{s}.parquet", suffix=".parquet")) for s in SPLITS}
        writers = {s: SplitWriter(tmps[s], s, meta) for s in SPLITS}
        try:
            fill(writers)
        finally:
            for w in writers.values():
                w.close()
        counts = {s: writers[s].count for s in SPLITS}
        for s in MCLS_SPLITS:
            if counts[s] == 0:
                raise DataError(f"split {s} is empty after ingest of {source}; check the input layout and data.src_lang")
        overlap_check(tmps)
    manifest = {**{k.split(".", 1)[1]: v for k, v in meta.items()}, "source": source, "rows": counts}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def overlap_check(tables: dict[str, Path]) -> None:
    """Assert zero overlap between How2-MS (pretrain) and How2-MCLS (train/val/test) tables."""
    ids = {s: set(pq.read_table(p, columns=["video_id"]).column(0).to_pylist()) for s, p in tables.items()}
    for a in SPLITS:
        for b in SPLITS:
            if a < b and ids[a] & ids[b]:
                both = sorted(ids[a] & ids[b])[:5]
                raise DataError(f"splits {a} and {b} share videos {both}; How2-MS and How2-MCLS must not overlap")


def add_arguments(p) -> None:
    p.add_argument("--format", required=True, choices=["how2-mcls", "how2-300h"])
    p.add_argument("--root", required=True, help="directory holding the layout")
    p.add_argument("--src-lang", required=True, choices=["pt", "zh"])
    p.add_argument("--media", default="npy", choices=["npy", "video", "none"])
    p.add_argument("--out", required=True, help="output directory for <split>.parquet + manifest.json")
    g = p.add_argument_group("how2-300h")
    g.add_argument("--splits-dir", default=None, help="official split ids: <dir>/{train,val,dev5}/id")
    g.add_argument("--summaries", default=None, help="'<video_id> <summary>' per line")
    g.add_argument("--ms-transcripts", default=None, help="'<video_id> <transcript>' per line (How2-MS)")
    g.add_argument("--features-dir", default=None)
    g.add_argument("--videos-dir", default=None)


def main(args) -> int:
    root = Path(args.root)
    if not root.is_dir():
        raise DataError(f"data root {root} is not a directory (config key data.root)")
    out = Path(args.out)
    if args.format == "how2-mcls":
        manifest = ingest_how2_mcls(root, args.src_lang, args.media, out)
    else:
        opt = lambda v: Path(v) if v else None  # noqa: E731
        manifest = ingest_how2_300h(
            root, args.src_lang, args.media, out,
            splits_dir=opt(args.splits_dir), summaries=opt(args.summaries),
            ms_transcripts=opt(args.ms_transcripts), features_dir=opt(args.features_dir),
            videos_dir=opt(args.videos_dir),
        )
    log.info("ingested %s: %s", root, ", ".join(f"{k}={v}" for k, v in manifest["rows"].items()))
    return 0
