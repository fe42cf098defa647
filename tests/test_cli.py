"""The `shopbot` command through its real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# The commands run without a generator unless a test trains one: CI has no models/generator.
# Models CI does not train: a test brings its own or runs without (the rule checks for safety).
NO_GENERATOR = {"SHOPBOT_GENERATION__MODEL_DIR": str(ROOT / "var" / "no-generator"),
                "SHOPBOT_SAFETY__MODEL_DIR": str(ROOT / "var" / "no-safety-model")}


def shopbot(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "--config", str(ROOT / "config.yml"), *args],
                          input=stdin, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SHOPBOT_ROOT": str(ROOT), **NO_GENERATOR, **(env or {})})


def test_chat_in_the_terminal_with_buttons(tmp_path: Path, intent_model_dir: Path) -> None:
    env = {"SHOPBOT_NLU__MODEL_DIR": str(intent_model_dir), "SHOPBOT_DATA__ORDERS_DB": str(tmp_path / "o.sqlite")}
    script = "hello\nwhere is my order?\n10023\ncancel order 10035\noliver.hughes@example.com\n2\nquit\n"
    result = shopbot("chat", stdin=script, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "JJD0001234567" in out and "Shall I cancel it?" in out
    assert "[1] Yes" in out and "[2] No" in out
    assert "haven't changed anything" in out  # "2" pressed the No button


def test_evaluate_writes_rasa_compatible_reports(tmp_path: Path, intent_model_dir: Path) -> None:
    data = tmp_path / "held_out.csv"
    data.write_text("text,intent\nwhere is my parcel,track_order\ncan i pay with paypal,check_payment_methods\n"
                    "hello there,greet\nI'd like my money back,get_refund\n", encoding="utf-8")
    oos = tmp_path / "oos.yml"
    oos.write_text("messages:\n- what is the capital of Peru\n- asdf qwer zxcv\n", encoding="utf-8")
    out = tmp_path / "report"
    result = shopbot("evaluate", "intents", "--data", str(data), "--out", str(out), "--out-of-scope", str(oos),
                     env={"SHOPBOT_NLU__MODEL_DIR": str(intent_model_dir)})
    assert result.returncode == 0, result.stderr
    assert "accuracy:" in result.stdout and "macro_f1:" in result.stdout
    report = json.loads((out / "intent_report.json").read_text())
    assert {"accuracy", "macro avg", "weighted avg", "track_order"} <= report.keys()
    assert report["track_order"]["support"] == 1
    assert "out_of_scope: 2 messages" in result.stdout and "auroc: " in result.stdout
    scope = json.loads((out / "out_of_scope_report.json").read_text())
    assert scope["in_scope"] == 4 and scope["out_of_scope"] == 2 and 0 <= scope["auroc"] <= 1
    for name in ("intent_errors.json", "intent_confusion_matrix.png", "intent_histogram.png"):
        assert (out / name).stat().st_size > 0


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    result = shopbot("chat", env={"SHOPBOT_NLU__MODEL_DIR": str(tmp_path / "none")})
    assert result.returncode == 1 and "run `shopbot train` first" in result.stderr


def test_train_skips_a_model_that_is_up_to_date(intent_model_dir: Path) -> None:
    result = shopbot("train", "intents", env={"SHOPBOT_NLU__MODEL_DIR": str(intent_model_dir)})
    assert result.returncode == 0 and "up to date" in result.stdout


def test_train_retrains_when_the_data_changed(tmp_path: Path) -> None:
    data = tmp_path / "nlu.yml"
    data.write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n    - hello\n    - hey\n'
                    "- intent: goodbye\n  examples: |\n    - bye\n    - see you\n    - ciao\n", encoding="utf-8")
    model = tmp_path / "model"
    model.mkdir()
    (model / "shopbot_nlu.json").write_text('{"data_hash": "trained-on-older-data"}', encoding="utf-8")
    result = shopbot("train", "intents", "--data", str(data), "--output", str(model), "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "no served graph" in result.stdout  # that older model had no model.int8.onnx either
    assert json.loads((model / "shopbot_nlu.json").read_text())["labels"] == ["goodbye", "greet"]


def test_train_retrains_when_the_data_changed_and_skips_when_it_did_not(tmp_path: Path) -> None:
    data = tmp_path / "nlu.yml"
    data.write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n    - hello\n    - hey\n'
                    "- intent: goodbye\n  examples: |\n    - bye\n    - see you\n    - ciao\n", encoding="utf-8")
    model = tmp_path / "model"
    assert shopbot("train", "intents", "--data", str(data), "--output", str(model), "--epochs", "1").returncode == 0

    again = shopbot("train", "intents", "--data", str(data), "--output", str(model), "--epochs", "1")
    assert "up to date" in again.stdout
    with data.open("a", encoding="utf-8") as file:
        file.write("    - cheerio\n")
    changed = shopbot("train", "intents", "--data", str(data), "--output", str(model), "--epochs", "1")
    assert "the training data changed" in changed.stdout


def test_bad_training_data_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "nlu.yml"
    bad.write_text("nlu:\n- intent: greet\n  examples: 5\n", encoding="utf-8")
    result = shopbot("train", "intents", "--force", "--data", str(bad), "--output", str(tmp_path / "m"))
    assert result.returncode == 1 and "nlu.yml" in result.stderr


def test_generator_train_describe_and_evaluate_from_the_command_line(tmp_path: Path) -> None:
    """A tiny generator through the same commands a shop runs (quality is `shopbot evaluate`'s job)."""
    tiny = {"SHOPBOT_GENERATION__MODEL_DIR": str(tmp_path / "generator"), "SHOPBOT_GENERATION__TRAIN__STEPS": "3",
            "SHOPBOT_GENERATION__TRAIN__N_LAYER": "1", "SHOPBOT_GENERATION__TRAIN__N_EMBD": "32",
            "SHOPBOT_GENERATION__TRAIN__N_HEAD": "2", "SHOPBOT_GENERATION__TRAIN__VOCAB_SIZE": "300",
            "SHOPBOT_GENERATION__TRAIN__CORPUS_SIZE": "120", "SHOPBOT_GENERATION__MAX_NEW_TOKENS": "8"}

    trained = shopbot("train", "generator", env=tiny)
    assert trained.returncode == 0, trained.stderr
    assert "validation perplexity" in trained.stdout and (tmp_path / "generator" / "shopbot_generator.json").is_file()
    assert "exists" in shopbot("train", "generator", env=tiny).stdout  # not retrained

    described = shopbot("generate", "description", "name=Fjord Parka", "category=Jackets", "colours=navy", env=tiny)
    assert described.returncode == 0, described.stderr
    assert described.stdout.strip() or "missing from the description" in described.stderr

    evaluated = shopbot("evaluate", "generator", "--dialogues", "4", env=tiny)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "grounding_rate: " in evaluated.stdout and "perplexity: " in evaluated.stdout


@pytest.mark.parametrize("attributes", [["name=Parka"], ["category=Jackets"], ["name"], ["=x", "category=y"]])
def test_a_description_needs_a_name_and_a_category(attributes: list[str]) -> None:
    result = shopbot("generate", "description", *attributes)
    assert result.returncode == 1 and ("needs" in result.stderr or "KEY=VALUE" in result.stderr)
