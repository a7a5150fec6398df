"""METEOR 1.5 through the jar shipped in pycocoevalcap — never nltk's METEOR (a different metric).

The jar runs as nmtpytorch (the How2 scorer) runs it: `java -Xmx2G -jar meteor-1.5.jar - - -stdio
-l en` with no `-norm`, working directory = the jar's folder so that `data/paraphrase-en.gz`
resolves. Protocol on stdin/stdout, one line each way:

    SCORE ||| ref_1 ||| … ||| ref_k ||| hypothesis   →  the segment's statistics
    EVAL ||| stats_1 ||| … ||| stats_N              →  N segment scores, then the corpus score

The corpus score (the last line, computed by the jar from the summed statistics) ×100 is what
`mcls evaluate` reports. "|||" inside a segment would break the protocol, so it is replaced by
a space; runs of whitespace (and newlines) become one space.

When Java, the jar or the paraphrase table is missing, or the jar fails, `MeteorUnavailable`
says why; `meteor_or_reason` turns that into the string "unavailable: <reason>".
The JVM starts in ~8 s and needs ~1.2 GB; reuse one `Meteor` for several sets.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

JAR_NAME = "meteor-1.5.jar"
PARAPHRASE = Path("data") / "paraphrase-en.gz"
ARGS = ["-", "-", "-stdio", "-l", "en"]  # no -norm (SPEC §6)
JVM_OPTS = ["-Xmx2G", "-Dfile.encoding=UTF-8"]


class MeteorUnavailable(RuntimeError):
    """METEOR cannot be computed here; the message is the reason."""


def find_jar() -> Path:
    """The METEOR 1.5 jar: $MCLS_METEOR_JAR if set, else the one inside pycocoevalcap."""
    env = os.environ.get("MCLS_METEOR_JAR")
    if env:
        return Path(env)
    try:
        import pycocoevalcap  # a namespace package: no __file__
    except ImportError as exc:
        raise MeteorUnavailable("pycocoevalcap is not installed (it ships meteor-1.5.jar)") from exc
    for root in pycocoevalcap.__path__:
        jar = Path(root) / "meteor" / JAR_NAME
        if jar.is_file():
            return jar
    raise MeteorUnavailable(f"{JAR_NAME} not found inside pycocoevalcap ({', '.join(pycocoevalcap.__path__)})")


def clean_segment(text: str) -> str:
    """One protocol-safe line: '|||' removed, whitespace runs collapsed."""
    return " ".join(text.replace("|||", " ").split())


class Meteor:
    """A running METEOR jar. Use as a context manager; `score()` may be called several times."""

    def __init__(self, java: str | None = None, jar: str | os.PathLike | None = None, timeout_s: float = 1800.0):
        java_path = shutil.which(java or "java")
        if java_path is None:
            raise MeteorUnavailable(f"java not found ({java or 'java'!r} is not an executable on PATH)")
        jar_path = Path(jar) if jar is not None else find_jar()
        if not jar_path.is_file():
            raise MeteorUnavailable(f"METEOR jar {jar_path} does not exist")
        if not (jar_path.parent / PARAPHRASE).is_file():
            raise MeteorUnavailable(f"paraphrase table {jar_path.parent / PARAPHRASE} does not exist")
        self.cmd = [java_path, *JVM_OPTS, "-jar", str(jar_path), *ARGS]
        self.timeout_s = timeout_s
        self._timed_out = False
        self._stderr = tempfile.TemporaryFile()
        log.debug("starting METEOR: %s (cwd %s)", " ".join(self.cmd), jar_path.parent)
        try:
            self._proc = subprocess.Popen(
                self.cmd, cwd=jar_path.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, text=True, encoding="utf-8", bufsize=1,
            )
        except OSError as exc:
            self._stderr.close()
            raise MeteorUnavailable(f"cannot start {java_path}: {exc}") from exc

    def __enter__(self) -> "Meteor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return text[-500:] if text else "no message"

    def _ask(self, line: str) -> None:
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise MeteorUnavailable(f"METEOR jar stopped: {self._stderr_tail()}") from exc

    def _answer(self) -> str:
        line = self._proc.stdout.readline()
        if not line:
            if self._timed_out:
                raise MeteorUnavailable(f"METEOR jar timed out after {self.timeout_s:.0f} s")
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            raise MeteorUnavailable(f"METEOR jar exited (status {self._proc.returncode}): {self._stderr_tail()}")
        return line.strip()

    def _on_timeout(self) -> None:
        self._timed_out = True
        self._proc.kill()

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """(corpus score, segment scores) as fractions (0..1)."""
        if self._proc.poll() is not None:
            raise MeteorUnavailable(f"METEOR jar is not running: {self._stderr_tail()}")
        # a watchdog: a hung JVM must not hang the pipeline
        self._timed_out = False
        timer = threading.Timer(self.timeout_s, self._on_timeout)
        timer.start()
        try:
            stats = []
            for hyp, refs in zip(hypotheses, references, strict=True):
                self._ask(" ||| ".join(["SCORE", *(clean_segment(r) for r in refs), clean_segment(hyp)]))
                stats.append(self._answer())
            self._ask(" ||| ".join(["EVAL", *stats]))
            try:
                segments = [float(self._answer()) for _ in stats]
                corpus = float(self._answer())
            except ValueError as exc:
                raise MeteorUnavailable(f"unexpected METEOR output: {exc}") from exc
        finally:
            timer.cancel()
        if self._timed_out:  # killed by the watchdog after answering: still a failure
            raise MeteorUnavailable(f"METEOR jar timed out after {self.timeout_s:.0f} s")
        return corpus, segments

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        try:
            if proc.stdin and not proc.stdin.closed:
                proc.stdin.close()  # the jar exits at end of input
            proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout:
                proc.stdout.close()
            self._stderr.close()
            self._proc = None

    def __del__(self) -> None:  # pragma: no cover - safety net only
        try:
            self.close()
        except Exception:
            pass


def meteor_or_reason(hypotheses: Sequence[str], references: Sequence[Sequence[str]], scorer: Meteor | None = None,
                     **kwargs) -> float | str:
    """METEOR ×100, or "unavailable: <reason>" (with a logged warning) when it cannot be computed."""
    try:
        if scorer is not None:
            return 100.0 * scorer.score(hypotheses, references)[0]
        with Meteor(**kwargs) as m:
            return 100.0 * m.score(hypotheses, references)[0]
    except MeteorUnavailable as exc:
        log.warning("METEOR unavailable: %s", exc)
        return f"unavailable: {exc}"
