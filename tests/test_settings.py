"""config.yml + SHOPBOT_* overrides + secrets from the environment only; bad keys fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Secret, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_config_loads_with_every_path_resolved() -> None:
    settings = load_settings(ROOT / "config.yml", env={})
    assert settings.server.port == 8000 and settings.shop.name == "Juniper Lane"
    assert settings.data.nlu == ROOT / "data" / "nlu.yml" and settings.data.nlu.is_file()
    assert settings.nlu.model_dir == ROOT / "models" / "intents"


def test_environment_overrides_nested_settings_with_types() -> None:
    env = {"SHOPBOT_SERVER__PORT": "9001", "SHOPBOT_NLU__TRAIN__EPOCHS": "2",
           "SHOPBOT_NLU__CONFIDENCE_THRESHOLD": "0.7", "SHOPBOT_SHOP__NAME": "Other Shop"}
    settings = load_settings(ROOT / "config.yml", env=env)
    assert (settings.server.port, settings.nlu.train.epochs) == (9001, 2)
    assert settings.nlu.confidence_threshold == 0.7 and settings.shop.name == "Other Shop"


@pytest.mark.parametrize(
    ("config", "env", "message"),
    [
        ("nlu:\n  confidence_treshold: 0.4\n", {}, "unknown setting 'nlu.confidence_treshold'"),
        ("colour: blue\n", {}, "unknown setting 'colour'"),
        ("server:\n  port: eighty\n", {}, "'server.port' must be int, got 'eighty'"),
        ("server:\n  port: 70000\n", {}, "'server.port' must be between"),
        ("nlu:\n  confidence_threshold: 1.5\n", {}, "'nlu.confidence_threshold' must be between"),
        ("nlu: 3\n", {}, "'nlu' must be a mapping"),
        ("server: [1\n", {}, "not valid YAML"),
        ("secrets:\n  redis_url: redis://x\n", {}, "secrets are read from the environment only"),
        ("", {"SHOPBOT_SERVER__PROT": "1"}, "SHOPBOT_SERVER__PROT: unknown setting 'server.prot'"),
        ("", {"SHOPBOT_STATE__HISTORY_LIMIT": "many"}, "'state.history_limit' must be int, got 'many'"),
        ("", {"SHOPBOT_ACTIONS__ENDPOINT": "localhost:5055"}, "'actions.endpoint' must be an http(s) URL"),
        ("nlu:\n  train:\n    precision: fp8\n", {}, "'nlu.train.precision' must be 'fp32' or 'bf16'"),
        ("", {"SHOPBOT_SAFETY__INPUT_THRESHOLD": "2"}, "'safety.input_threshold' must be between"),
    ],
)
def test_bad_settings_fail_at_start_naming_the_key(tmp_path: Path, config: str, env: dict, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(write(tmp_path, config), env=env)
    assert message in str(error.value)


def test_secrets_come_from_the_environment_and_never_print() -> None:
    env = {"REDIS_URL": "redis://:hunter2@db:6379/0", "TELEGRAM_BOT_TOKEN": "123:abc"}
    settings = load_settings(ROOT / "config.yml", env=env)
    assert settings.secrets.redis_url.reveal() == "redis://:hunter2@db:6379/0"
    assert "hunter2" not in repr(settings) and "123:abc" not in str(settings)
    assert not Secret("") and Secret("x")


def test_cli_reports_a_bad_setting_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    assert main(["--config", str(write(tmp_path, "server:\n  hots: x\n")), "config"]) == 2
    assert "unknown setting 'server.hots'" in capsys.readouterr().err
