"""`shopbot train safety` and `shopbot evaluate safety`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bot.errors import UserError
from bot.settings import Settings
from nlu.classifier import METADATA_FILE


def train_safety(settings: Settings, args: argparse.Namespace) -> None:
    import yaml

    from generation.safety.classifier import calibrate, development_examples, training_examples
    from generation.safety.evaluate import load_rows
    from nlu.dataset import stratified_split
    from nlu.train import TrainConfig, train_intents

    s = settings.safety
    output = args.output if args.output and args.target == "safety" else s.model_dir
    if (output / METADATA_FILE).is_file() and not args.force:
        print(f"safety classifier in {output} exists (use --force to retrain)")
        return
    davidson = s.davidson if s.davidson_per_class and s.davidson.is_file() else None
    try:
        shop = settings.data.nlu if s.shop_messages and settings.data.nlu.exists() else None
        examples = training_examples(davidson, s.data, s.davidson_per_class, shop_messages=shop)
    except (OSError, KeyError, ValueError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read the safety training data: {exc}") from exc
    source = (f"{s.data}" + (f", {s.davidson_per_class} tweets per class of {davidson}" if davidson else "")
              + (f" and the shop's messages in {shop}" if shop else ""))
    print(f"training the safety classifier on {len(examples)} texts from {source}...")
    config = TrainConfig(epochs=args.epochs or s.epochs, threads=settings.nlu.threads)
    result = train_intents(examples, output, config)
    # The thresholds let 99.5 % of the development set's safe replies (97 % of its safe messages)
    # through; without the set, the held-out split training scored sets them (smaller, and with
    # the tweets' noisy labels: a rougher estimate).
    if s.calibration.is_file():
        try:
            held_out, source = development_examples(load_rows(s.calibration)), str(s.calibration)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the calibration set: {exc}") from exc
    else:
        held_out = stratified_split(examples, config.validation_fraction, config.seed)[1]
        source = "held-out split"
    calibration = calibrate(output, held_out, source=source)
    print(f"saved to {result.output_dir} in {result.train_seconds:.0f} s; harm thresholds set on {source}: "
          f"replies {calibration['threshold']:.3f}, messages {calibration['input_threshold']:.3f}")
    print(f"share flagged per category there at the reply threshold: {calibration['flagged_at_threshold']}")
    print(f"... and at the message threshold: {calibration['flagged_at_input_threshold']}")


def evaluate_safety(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import load_knowledge, open_safety
    from generation.safety.evaluate import evaluate_safety, load_rows

    if args.data is None:
        raise UserError("evaluate safety needs --data FILE: a CSV text,label[,category,direction]")
    try:
        rows = load_rows(args.data)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    report = evaluate_safety(open_safety(settings, load_knowledge(settings)), rows)
    out = args.out or Path("reports/safety")
    out.mkdir(parents=True, exist_ok=True)
    (out / "safety_report.json").write_text(json.dumps({
        "categories": [{"category": c.category, "label": c.label, "texts": c.n, "flagged": c.flagged, "rate": c.rate}
                       for c in report.categories],
        "precision": report.precision, "recall": report.recall, "false_positive_rate": report.false_positive_rate,
        "ms_per_text": report.ms_per_text,
        "errors": [{"category": c, "text": t, "found": f} for c, t, f in report.misses],
    }, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{args.data}: {len(rows)} texts")
    print("\n".join(report.lines()))
    print(f"report and every error written to {out}/safety_report.json")
    return 0
