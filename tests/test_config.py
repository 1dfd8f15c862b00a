"""One configuration path: Settings describes every setting; resources and docs follow it."""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest

from assets.resources import FreshnessResource
from freshness.cli.main import main as cli_main
from freshness.config import Settings, env_name, markdown_table
from freshness.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_resource_exposes_exactly_the_settings_fields_with_the_same_defaults():
    settings = {f.name: f.default for f in dataclasses.fields(Settings)}
    resource = {name: info.default for name, info in FreshnessResource.model_fields.items()}
    assert resource == settings


def test_resource_builds_settings_from_its_own_values_not_the_environment(monkeypatch):
    monkeypatch.setenv("FRESHNESS_BATCH_SIZE", "7")
    assert FreshnessResource(batch_size=3).settings().batch_size == 3
    assert FreshnessResource().settings().batch_size == 64


def test_resource_from_env_keeps_secrets_as_env_vars(monkeypatch):
    import dagster as dg

    monkeypatch.setenv("QDRANT_API_KEY", "k-123")
    monkeypatch.setenv("FRESHNESS_SLACK_WEBHOOK_URL", "https://hooks.example/x")
    monkeypatch.setenv("FRESHNESS_MAX_STALENESS_HOURS", "6")
    resource = FreshnessResource.from_env()
    assert resource.max_staleness_hours == 6.0
    assert isinstance(resource.qdrant_api_key, dg.EnvVar)
    assert isinstance(resource.slack_webhook_url, dg.EnvVar)


def test_readme_settings_table_is_generated_from_settings():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, (
        "README's settings table drifted: regenerate it with `python -m freshness.config`")


def test_every_setting_has_a_valid_example_that_parses():
    hints = __import__("typing").get_type_hints(Settings)
    from freshness.config import parse

    for f in dataclasses.fields(Settings):
        if f.metadata["secret"] or f.name == "state_root":
            continue
        value = parse(f, hints[f.name], f.metadata["example"])
        Settings(**{f.name: value})  # the example passes validation


NONSENSE = [
    ("FRESHNESS_BUDGET_GPU_SECONDS_PER_DAY", "-5"),
    ("FRESHNESS_BUDGET_GPU_SECONDS_PER_DAY", "nan"),
    ("FRESHNESS_MAX_STALENESS_HOURS", "-1"),
    ("FRESHNESS_MAX_STALENESS_HOURS", "NaN"),
    ("FRESHNESS_MAX_STALENESS_HOURS", "inf"),
    ("FRESHNESS_BATCH_SHARDS", "maybe"),
    ("FRESHNESS_BATCH_SIZE", "0"),
    ("FRESHNESS_BATCH_SIZE", "many"),
    ("FRESHNESS_LOCK_TIMEOUT_S", "nan"),
    ("FRESHNESS_QDRANT_URL", "qdrant:6333"),
    ("FRESHNESS_QDRANT_URL", "http://:6333"),
    ("FRESHNESS_QDRANT_URL", "http://host:port"),
    ("FRESHNESS_DEVICE", "tpu"),
    ("FRESHNESS_PER_SHARD_SLA_HOURS", "{linux: 6}"),
    ("FRESHNESS_PER_SHARD_SLA_HOURS", '{"linux": -6}'),
    ("FRESHNESS_ALERT_WARN_FRACTION", "2"),
    ("FRESHNESS_MIN_INTERVAL_MINUTES", "-1"),
    ("FRESHNESS_UPSERT_BATCH", "0"),
]


@pytest.mark.parametrize(("variable", "value"), NONSENSE)
def test_nonsense_values_fail_at_start_naming_the_variable_and_an_example(variable, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({variable: value})
    message = str(err.value)
    assert message.startswith(f"{variable}=") and "for example" in message


def test_a_state_root_that_is_a_file_is_refused(tmp_path):
    afile = tmp_path / "state"
    afile.write_text("not a folder")
    with pytest.raises(ConfigError, match="FRESHNESS_STATE_ROOT=.*is a file"):
        Settings.from_env({"FRESHNESS_STATE_ROOT": str(afile)})


def test_overlap_must_be_smaller_than_the_chunk():
    with pytest.raises(ConfigError, match="FRESHNESS_OVERLAP_TOKENS"):
        Settings(chunk_tokens=32, overlap_tokens=32)


def test_finite_values_and_booleans_parse():
    s = Settings.from_env({"FRESHNESS_BATCH_SHARDS": "off", "FRESHNESS_DEVICE": "cuda:1",
                           "FRESHNESS_BUDGET_GPU_SECONDS_PER_DAY": "0",
                           "FRESHNESS_MAX_STALENESS_HOURS": "0.5"})
    assert s.batch_shards is False and s.device == "cuda:1"
    assert s.budget_gpu_seconds_per_day == 0 and math.isclose(s.max_staleness_hours, 0.5)


def test_cli_reports_a_bad_variable_without_a_traceback(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FRESHNESS_BATCH_SIZE", "0")
    assert cli_main(["status", "--path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: FRESHNESS_BATCH_SIZE=0") and "Traceback" not in err


def test_settings_table_command_prints_every_variable():
    out = subprocess.run([sys.executable, "-m", "freshness.config"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    for f in dataclasses.fields(Settings):
        assert f"`{env_name(f)}`" in out
