"""`shopbot`: serve, chat, train, evaluate, run the action server, reset the demo orders."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# One BLAS thread: scoring one message is microseconds of numpy, and BLAS threads spinning
# against torch's own threads on a small machine made it a thousand times slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bot.settings import Settings, SettingsError, load_settings  # noqa: E402

log = logging.getLogger("shopbot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopbot", description="ShopBot, the shop's support assistant.")
    parser.add_argument("--config", type=Path, help="settings file (default: config.yml or $SHOPBOT_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the web app (REST API, demo shop)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    chat = commands.add_parser("chat", help="talk to the bot in this terminal")
    chat.add_argument("--conversation-id", default="terminal")

    train = commands.add_parser("train", help="train the models (only the missing ones unless --force)")
    train.add_argument("target", nargs="?", choices=["all", "intents", "generator", "safety"], default="all")
    train.add_argument("--force", action="store_true", help="retrain even if a model exists")
    train.add_argument("--data", type=Path, help="intent training data (default: data.nlu in config.yml)")
    train.add_argument("--epochs", type=int, help="intents, safety: passes over the data")
    train.add_argument("--steps", type=int, help="generator: optimisation steps")
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--output", type=Path,
                       help="artifact directory (default: nlu.model_dir, generation.model_dir or safety.model_dir)")

    evaluate = commands.add_parser("evaluate", help="evaluate a trained model")
    evaluate.add_argument("target", choices=["intents", "generator", "safety"])
    evaluate.add_argument("--dialogues", type=int, default=400,
                          help="generator: held-out dialogues to generate for (from the corpus split)")
    evaluate.add_argument("--data", type=Path,
                          help="intents: Rasa NLU YAML or CSV (text,intent), default the validation split of "
                               "data.nlu; safety: CSV text,label[,category,direction]")
    evaluate.add_argument("--out", type=Path, help="report directory (default: reports/<target>)")
    evaluate.add_argument("--out-of-scope", type=Path, metavar="FILE",
                          help="messages that belong to no intent (YAML 'messages:' list or one per line): "
                               "report how many are flagged and the AUROC against the evaluated set")

    generate = commands.add_parser("generate", help="use the generator as a tool")
    generate.add_argument("what", choices=["description"])
    generate.add_argument("attributes", nargs="+", metavar="KEY=VALUE",
                          help='name=..., category=... (required); material, colours, sizes, features, care, price')

    actions = commands.add_parser("actions", help="serve the actions with the rasa-sdk action server")
    actions.add_argument("--port", type=int)

    orders = commands.add_parser("orders", help="the demo order store")
    orders.add_argument("operation", choices=["reset"], help="recreate it from data/demo_orders.yml")

    nlu = commands.add_parser("nlu", help="improve the intent classifier")
    nlu_commands = nlu.add_subparsers(dest="nlu_command", required=True)
    review = nlu_commands.add_parser("review", help="export unsure messages as Rasa NLU YAML to label")
    review.add_argument("--out", type=Path, default=Path("reports/nlu_review.yml"))
    review.add_argument("--limit", type=int, default=1000, help="newest messages to export")

    tg = commands.add_parser("telegram", help="the Telegram channel (needs TELEGRAM_BOT_TOKEN)")
    tg_commands = tg.add_subparsers(dest="telegram_command", required=True)
    tg_commands.add_parser("poll", help="answer by long polling (development; removes any webhook)")
    tg_commands.add_parser("worker", help="answer updates the webhook of `shopbot serve` keeps in Redis")
    hook = tg_commands.add_parser("set-webhook", help="make Telegram post updates to URL (https://.../telegram/webhook)")
    hook.add_argument("url")
    hook.add_argument("--drop-pending", action="store_true", help="forget updates Telegram still holds")
    tg_commands.add_parser("delete-webhook", help="stop Telegram posting updates (before polling)")

    ops = commands.add_parser("operators", help="accounts of the people who answer in the console")
    ops_commands = ops.add_subparsers(dest="operators_command", required=True)
    add = ops_commands.add_parser("add", help="create an operator (or set a new password); asks for the password")
    add.add_argument("username")
    add.add_argument("--display-name", help="the name shoppers and colleagues see (default: the username)")
    remove = ops_commands.add_parser("remove", help="delete an operator")
    remove.add_argument("username")
    ops_commands.add_parser("list", help="list the operators")

    commands.add_parser("config", help="print the effective settings (secrets hidden)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("SHOPBOT_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"shopbot: configuration error: {exc}", file=sys.stderr)
        return 2
    from bot import commands, operator_commands, telegram_commands  # heavy imports only once settings are valid

    handlers = {
        "serve": commands.serve, "chat": commands.chat, "train": commands.train,
        "evaluate": commands.evaluate, "actions": commands.actions, "orders": commands.orders,
        "config": _print_config, "nlu": commands.nlu_review, "generate": commands.generate,
        "telegram": telegram_commands.telegram, "operators": operator_commands.operators,
    }
    try:
        return handlers[args.command](settings, args)
    except commands.UserError as exc:
        print(f"shopbot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _print_config(settings: Settings, args: argparse.Namespace) -> int:
    print(settings)
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
