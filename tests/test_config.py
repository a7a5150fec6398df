"""Config validation: schema errors name the key and the allowed values, before any job."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from mcls.config import load, validate
from mcls.errors import ConfigError

from conftest import REPO


@pytest.fixture
def demo_cfg() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_demo_config_is_valid_and_defaults_are_filled(demo_cfg):
    cfg = validate(demo_cfg)
    assert cfg["run"] == "demo"
    assert cfg["data"]["demo"]["enabled"] is True
    del demo_cfg["vocab"]
    cfg = validate(demo_cfg)
    assert cfg["vocab"] == {"min_count": 1, "en_splits": ["pretrain", "train"], "src_splits": ["train"]}


@pytest.mark.parametrize("preset", sorted((REPO / "resources" / "presets").glob("*.yaml")), ids=lambda p: p.name)
def test_presets_validate(preset):
    cfg = load(preset, check_paths=False)
    if preset.name.startswith("demo"):
        assert cfg["data"]["demo"]["enabled"] is True and cfg["run"] != "demo"
    else:
        assert cfg["model"]["d_model"] == 512 and cfg["data"]["demo"]["enabled"] is False


def test_unknown_key_names_key_and_suggests(demo_cfg):
    demo_cfg["data"]["fromat"] = "how2-mcls"
    with pytest.raises(ConfigError) as e:
        validate(demo_cfg)
    msg = str(e.value)
    assert "config key 'data'" in msg and "unknown key 'fromat'" in msg and "did you mean 'format'" in msg
    assert "allowed keys:" in msg and "src_lang" in msg


def test_unknown_top_level_key(demo_cfg):
    demo_cfg["modles"] = ["vdf"]
    with pytest.raises(ConfigError, match=r"unknown key 'modles' \(did you mean 'models'\?\)"):
        validate(demo_cfg)


def test_enum_error_lists_allowed_values(demo_cfg):
    demo_cfg["data"]["format"] = "how2"
    with pytest.raises(ConfigError) as e:
        validate(demo_cfg)
    assert "config key 'data.format': 'how2' is not allowed (allowed: how2-mcls, how2-300h)" in str(e.value)


def test_wrong_type_names_nested_key(demo_cfg):
    demo_cfg["data"]["demo"]["train"] = "ten"
    with pytest.raises(ConfigError, match=r"config key 'data.demo.train': expected integer, got str 'ten'"):
        validate(demo_cfg)


def test_minimum_violation(demo_cfg):
    demo_cfg["features"]["max_failure_fraction"] = 1.5
    with pytest.raises(ConfigError, match=r"features.max_failure_fraction': 1.5 violates maximum 1"):
        validate(demo_cfg)


def test_model_list_enum(demo_cfg):
    demo_cfg["models"] = ["vdf", "bert"]
    with pytest.raises(ConfigError, match=r"config key 'models\[1\]': 'bert' is not allowed"):
        validate(demo_cfg)


def test_missing_required_key(demo_cfg):
    del demo_cfg["data"]["src_lang"]
    with pytest.raises(ConfigError, match=r"config key 'data': 'src_lang' is a required property"):
        validate(demo_cfg)


def test_missing_data_root_path(demo_cfg, tmp_path):
    demo_cfg["data"]["demo"]["enabled"] = False
    demo_cfg["data"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"config key 'data.root': path .*nowhere' does not exist"):
        validate(demo_cfg)


def test_300h_requires_summaries(demo_cfg, tmp_path):
    cfg = copy.deepcopy(demo_cfg)
    cfg["data"].update(format="how2-300h", root=str(tmp_path), media="npy")
    cfg["data"]["demo"]["enabled"] = False
    cfg["features"]["source"] = "import"
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert "data.how2_300h.summaries': required" in str(e.value)
    assert "data.how2_300h.splits_dir': required" in str(e.value)


def test_features_source_must_match_media(demo_cfg):
    demo_cfg["data"]["media"] = "npy"
    with pytest.raises(ConfigError, match="'extract' reads raw videos; set data.media: video"):
        validate(demo_cfg)


def test_load_reports_file_and_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load(bad)
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "missing.yaml")


def test_snakemake_rejects_bad_config_before_any_job(tmp_path, demo_cfg, mcls_env):
    demo_cfg["data"]["format"] = "how3"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(demo_cfg))
    proc = subprocess.run(["snakemake", "-n", "--configfile", str(bad)], cwd=REPO, env=mcls_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "config key 'data.format': 'how3' is not allowed (allowed: how2-mcls, how2-300h)" in proc.stderr + proc.stdout
    assert "Job stats" not in proc.stdout + proc.stderr
