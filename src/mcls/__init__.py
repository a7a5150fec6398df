"""mcls: multimodal cross-lingual summarization of videos (VDF + triple-stage training)."""

__version__ = "0.1.0"


def code_version() -> str:
    """Version string recorded in every artifact's metadata: package version plus git commit when known."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            dirty = subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
                capture_output=True, text=True, timeout=5,
            )
            suffix = "+dirty" if dirty.stdout.strip() else ""
            return f"{__version__}+g{out.stdout.strip()}{suffix}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__
