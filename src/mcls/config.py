"""Configuration: load a YAML config, fill defaults and validate it against the JSON schema.

The schema (`workflow/schemas/config.schema.yaml`, JSON Schema 2020-12) is the single source of
truth for keys, types, allowed values and defaults. Errors name the offending key by its
dotted path and list the allowed values, e.g.::

    config key 'data.format': 'how2' is not allowed (allowed: how2-mcls, how2-300h)
    config key 'data': unknown key 'fromat' (allowed: format, src_lang, …; did you mean 'format'?)
"""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path | None = None) -> dict:
    path = Path(path) if path else SCHEMA_PATH
    if not path.exists():
        raise ConfigError(f"schema file {path} not found (run mcls from a checkout of the repository)")
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _dotted(path) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    out = ""
    for p in parts:
        out += p if (p.startswith("[") or not out) else "." + p
    return out or "<top level>"


def fill_defaults(config: Any, schema: dict, root: dict | None = None) -> Any:
    """Recursively insert `default` values of object properties that are absent."""
    root = root or schema
    schema = _resolve_ref(schema, root)
    if isinstance(config, dict) and schema.get("type") == "object":
        for key, sub in schema.get("properties", {}).items():
            sub_r = _resolve_ref(sub, root)
            if key not in config and "default" in sub_r:
                config[key] = copy.deepcopy(sub_r["default"])
            if key in config:
                config[key] = fill_defaults(config[key], sub_r, root)
    elif isinstance(config, list) and "items" in schema:
        return [fill_defaults(item, schema["items"], root) for item in config]
    return config


def _resolve_ref(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if not ref:
        return schema
    assert ref.startswith("#/"), f"only local $refs are supported, got {ref}"
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _format_error(err) -> str:
    key = _dotted(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        hints = []
        for e in extra:
            close = difflib.get_close_matches(e, allowed, n=1)
            hints.append(f"unknown key '{e}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return f"config key '{key}': {', '.join(hints)}; allowed keys: {', '.join(allowed)}"
    if v == "enum":
        allowed = ", ".join(json.dumps(a) if not isinstance(a, str) else a for a in err.validator_value)
        return f"config key '{key}': {err.instance!r} is not allowed (allowed: {allowed})"
    if v == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"config key '{key}': expected {want}, got {type(err.instance).__name__} {err.instance!r}"
    if v == "required":
        return f"config key '{key}': {err.message}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"config key '{key}': {err.instance!r} violates {v} {err.validator_value}"
    return f"config key '{key}': {err.message}"


def validate(config: dict, schema: dict | None = None, check_paths: bool = True) -> dict:
    """Fill defaults into a copy of `config`, validate it, and return the filled copy.

    `check_paths=False` skips the checks that input paths exist (for presets checked on a
    machine without the data)."""
    import jsonschema

    schema = schema or load_schema()
    if not isinstance(config, dict):
        raise ConfigError(f"the config must be a mapping of keys, got {type(config).__name__}")
    filled = fill_defaults(copy.deepcopy(config), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        msgs = [_format_error(e) for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(msgs))
    check_semantics(filled, check_paths)
    return filled


def check_semantics(cfg: dict, check_paths: bool = True) -> None:
    """Cross-key checks that JSON Schema cannot express (paths that must exist, combinations)."""
    data = cfg["data"]
    problems = []
    demo = data.get("demo", {}).get("enabled", False)
    downloads = data.get("downloads", [])
    exists = (lambda p: Path(p).exists()) if check_paths else (lambda p: True)
    if demo and Path(data["root"]).resolve() == Path(".").resolve():
        problems.append("config key 'data.root': the demo corpus is written there; use a directory of its own")
    if not demo and not downloads and not exists(data["root"]):
        problems.append(
            f"config key 'data.root': path {data['root']!r} does not exist "
            "(point it at the unpacked How2 data, or configure data.downloads / data.demo.enabled)"
        )
    if data["format"] == "how2-300h":
        h = data.get("how2_300h") or {}
        for key in ("splits_dir", "summaries"):
            if not h.get(key):
                problems.append(f"config key 'data.how2_300h.{key}': required when data.format is how2-300h")
        for key in ("splits_dir", "summaries", "ms_transcripts", "features_dir"):
            p = h.get(key)
            if p and not downloads and not exists(p):
                problems.append(f"config key 'data.how2_300h.{key}': path {p!r} does not exist")
        if demo:
            problems.append("config key 'data.demo.enabled': the demo corpus is written in the how2-mcls layout; set data.format: how2-mcls")
    if data["format"] == "how2-mcls" and data["src_lang"] not in ("pt", "zh"):
        problems.append(f"config key 'data.src_lang': {data['src_lang']!r} is not supported")
    feats = cfg.get("features", {})
    if feats.get("source") == "import" and data.get("media") != "npy":
        problems.append("config key 'features.source': 'import' reads .npy features; set data.media: npy")
    if feats.get("source") == "extract" and data.get("media") != "video":
        problems.append("config key 'features.source': 'extract' reads raw videos; set data.media: video")
    ckpt = feats.get("checkpoint")
    if ckpt and not exists(ckpt):
        problems.append(f"config key 'features.checkpoint': file {ckpt!r} does not exist (see README: Kinetics checkpoint)")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def load(path: str | Path, schema: dict | None = None, check_paths: bool = True) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    try:
        return validate(raw or {}, schema, check_paths)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def add_arguments(p) -> None:
    p.add_argument("config", help="YAML config file")
    p.add_argument("--print", action="store_true", help="print the config with defaults filled in")


def main(args) -> int:
    cfg = load(args.config)
    if args.print:
        print(yaml.safe_dump(cfg, sort_keys=False))
    else:
        print(f"{args.config}: valid")
    return 0
