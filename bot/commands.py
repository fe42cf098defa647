"""What each `shopbot` command does, once the settings are loaded."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from pathlib import Path

from bot import safety_commands
from bot.app import build_app, load_catalog, load_knowledge, open_orders, open_services, product_names
from bot.errors import UserError
from bot.settings import Settings
from bot.types import InboundMessage, Reply
from nlu.classifier import METADATA_FILE, OUT_OF_SCOPE, IntentClassifier, ModelNotFoundError
from nlu.dataset import DatasetError, Example, data_hash, load_examples, stratified_split
from nlu.runtime import ONNX_FILE

log = logging.getLogger("shopbot")


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    server = dataclasses.replace(settings.server, host=args.host or settings.server.host,
                                 port=args.port or settings.server.port)
    settings = dataclasses.replace(settings, server=server)
    require_model(settings)
    log.info("serving %s on http://%s:%d", settings.shop.name, server.host, server.port)
    uvicorn.run(build_app(settings), host=server.host, port=server.port, log_level="info")
    return 0


def chat(settings: Settings, args: argparse.Namespace) -> int:
    require_model(settings)
    asyncio.run(_chat(settings, args.conversation_id))
    return 0


def _show(replies: list[Reply]) -> list[str]:
    """Print replies; returns the button payloads so the shopper can answer with their number."""
    payloads: list[str] = []
    for reply in replies:
        print(f"bot> {reply.text}")
        for button in reply.buttons:
            payloads.append(button.payload)
            print(f"     [{len(payloads)}] {button.title}")
    return payloads


async def _chat(settings: Settings, conversation_id: str) -> None:
    from bot.engine import InputRejected

    async with open_services(settings) as services:
        print(f"Talking to {settings.shop.name}'s assistant. Type 'quit' to leave; a number presses a button.")
        payloads: list[str] = []
        while True:
            try:
                text = await asyncio.to_thread(input, "you> ")
            except EOFError:
                break
            if text.strip().lower() in ("quit", "exit"):
                break
            if text.strip().isdigit() and 0 < int(text) <= len(payloads):
                text = payloads[int(text) - 1]
            try:
                replies = await services.engine.handle(InboundMessage("terminal", conversation_id, text))
            except InputRejected as exc:
                print(f"bot> {exc.reply}")
                continue
            payloads = _show(replies)


def train(settings: Settings, args: argparse.Namespace) -> int:
    if args.target in ("all", "intents"):
        _train_intents(settings, args)
    if args.target in ("all", "generator"):
        _train_generator(settings, args)
    if args.target in ("all", "safety"):
        safety_commands.train_safety(settings, args)
    return 0


def _train_generator(settings: Settings, args: argparse.Namespace) -> None:
    from generation.corpus import build_corpus, load_templates, split
    from generation.generator import METADATA_FILE as GENERATOR_METADATA
    from generation.train import GeneratorConfig, train_generator

    g, t = settings.generation, settings.generation.train
    output = args.output if args.output and args.target == "generator" else g.model_dir
    if (output / GENERATOR_METADATA).is_file() and not args.force:
        print(f"generator in {output} exists (use --force to retrain)")
        return
    try:
        templates = load_templates(g.templates)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    train_set, validation = split(build_corpus(templates, t.corpus_size, t.seed), t.validation_fraction, t.seed)
    config = GeneratorConfig(base_model=g.base_model, n_layer=t.n_layer, n_embd=t.n_embd, n_head=t.n_head,
                             vocab_size=t.vocab_size, steps=args.steps or t.steps, batch_size=t.batch_size,
                             learning_rate=args.learning_rate or t.learning_rate, max_minutes=t.max_minutes,
                             seed=t.seed, threads=g.threads)
    print(f"training the generator on {len(train_set)} dialogues ({config.steps} steps, "
          f"at most {config.max_minutes:g} minutes)...")
    result = train_generator(train_set, validation, output, config)
    print(f"saved to {result.output_dir}: validation perplexity {result.validation_perplexity:.2f} "
          f"({len(validation)} dialogues), {result.parameters / 1e6:.1f} M parameters, {result.steps} steps in "
          f"{result.train_seconds:.0f} s" + (" (stopped at the time limit)" if result.stopped_early else ""))


def _train_intents(settings: Settings, args: argparse.Namespace) -> None:
    from nlu.train import TrainConfig, train_intents

    output = args.output or settings.nlu.model_dir
    examples = _examples(args.data or settings.data.nlu)
    trained_on = _trained_data_hash(output)
    served = (output / ONNX_FILE).is_file()
    if not args.force and trained_on == data_hash(examples) and served:
        print(f"intent model in {output} is up to date with its data (use --force to retrain)")
        return
    if trained_on is not None and not args.force:
        reason = "the training data changed" if served else f"it has no served graph ({ONNX_FILE})"
        print(f"{output} was trained before, but {reason}: retraining")
    t = settings.nlu.train
    config = TrainConfig(base_model=settings.nlu.base_model, epochs=args.epochs or t.epochs,
                         learning_rate=args.learning_rate or t.learning_rate, batch_size=t.batch_size,
                         max_length=t.max_length, validation_fraction=t.validation_fraction, seed=t.seed,
                         noise_rate=t.noise_rate, precision=t.precision, length_buckets=t.length_buckets)
    print(f"training the intent classifier on {len(examples)} examples ({config.epochs} epochs)...")
    result = train_intents(examples, output, config)
    print(f"saved to {result.output_dir}: validation accuracy {result.val_accuracy:.4f}, "
          f"macro-F1 {result.val_macro_f1:.4f}, {result.train_seconds:.0f} s "
          f"({result.n_train} train / {result.n_validation} validation examples)")


def generate(settings: Settings, args: argparse.Namespace) -> int:
    pairs = [a.partition("=") for a in args.attributes]
    bad = [key for key, sep, value in pairs if not sep or not key.strip() or not value.strip()]
    if bad:
        raise UserError(f"attributes are KEY=VALUE, got {', '.join(map(repr, bad))}")
    attributes = {key.strip(): value.strip() for key, _, value in pairs}
    missing = [k for k in ("name", "category") if k not in attributes]
    if missing:
        raise UserError(f"a description needs {' and '.join(missing)}")

    async def write() -> int:
        from bot.app import open_writer

        writer = open_writer(settings, load_knowledge(settings), load_catalog(settings))
        if writer is None:
            raise UserError(f"no generator in {settings.generation.model_dir}: run `shopbot train generator`")
        try:
            description = await writer.describe(attributes)
        finally:
            await writer.generator.aclose()
        print(description.text)
        if description.missing:
            print(f"missing from the description: {', '.join(description.missing)}", file=sys.stderr)
        return 0

    return asyncio.run(write())


def evaluate(settings: Settings, args: argparse.Namespace) -> int:
    if args.target == "generator":
        return _evaluate_generator(settings, args)
    if args.target == "safety":
        return safety_commands.evaluate_safety(settings, args)
    args.out = args.out or Path("reports/intents")
    from nlu.evaluate import evaluate_intents

    classifier = _classifier(settings)
    if args.data:
        examples, source = _examples(args.data), str(args.data)
    else:  # the held-out split the model was scored on while training, rebuilt from its metadata
        params = classifier.metadata.get("hyperparameters", {})
        _, examples = stratified_split(_examples(settings.data.nlu), params.get("validation_fraction", 0.15),
                                       params.get("seed", 13))
        source = f"validation split of {settings.data.nlu}"
    report = evaluate_intents(classifier, examples, args.out)
    print(f"{source}: {report.n_examples} examples")
    print(f"accuracy: {report.accuracy:.4f}\nmacro_f1: {report.macro_f1:.4f}")
    print(f"reports written to {report.out_dir}/ (intent_report.json, intent_errors.json, "
          "intent_confusion_matrix.png, intent_histogram.png)")
    if args.out_of_scope:  # the support messages among the evaluated ones are the in-scope side
        _report_scope(classifier, [e.text for e in examples if e.intent != OUT_OF_SCOPE], args.out_of_scope, args.out)
    return 0


def _evaluate_generator(settings: Settings, args: argparse.Namespace) -> int:
    from generation.corpus import build_corpus, load_templates, split
    from generation.evaluate import evaluate_generator
    from generation.generator import Generator, GeneratorNotFoundError
    from generation.sampling import SamplingSettings

    g, t = settings.generation, settings.generation.train
    try:
        generator = Generator.load(g.model_dir, SamplingSettings(g.temperature, g.top_p, g.repetition_penalty,
                                                                 g.max_new_tokens, g.stop), threads=g.threads, seed=0)
    except GeneratorNotFoundError as exc:
        raise UserError(str(exc)) from exc
    templates = load_templates(g.templates)
    # The held-out split of the very corpus training used (same size, seed and fraction).
    _, validation = split(build_corpus(templates, t.corpus_size, t.seed), t.validation_fraction, t.seed)
    products = {*product_names(load_catalog(settings)), *templates.pools["product"].values}
    report = evaluate_generator(generator, validation[: args.dialogues], products,
                                candidates=g.description_candidates, answer_candidates=g.answer_candidates)
    print(f"held-out dialogues of the corpus split ({t.corpus_size} built, seed {t.seed})")
    print("\n".join(report.lines()))
    for question, reply, grounded in report.examples:
        print(f"  {'ok ' if grounded else 'BAD'} {question!r} -> {reply!r}")
    return 0


def _report_scope(classifier: IntentClassifier, in_scope: list[str], path: Path, out: Path) -> None:
    from nlu.scope_eval import load_messages, scope_report

    try:
        messages = load_messages(path)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    scope = scope_report(classifier, in_scope, messages, out)
    print(f"out_of_scope: {scope.out_of_scope} messages from {path}, {scope.out_of_scope_flagged:.1%} flagged")
    print(f"in_scope_flagged: {scope.in_scope_flagged:.1%} of the {scope.in_scope} evaluated messages")
    print(f"auroc: {scope.auroc:.3f}" if scope.auroc is not None else "auroc: n/a (model has no detector)")


def actions(settings: Settings, args: argparse.Namespace) -> int:
    from rasa_sdk.endpoint import create_app

    from bot.actions.registry import build_executor

    knowledge = load_knowledge(settings)
    executor = build_executor(knowledge, open_orders(settings, knowledge))
    port = args.port or settings.actions.server_port
    app = create_app(executor, cors_origins=[])
    log.info("action server with %d actions on http://127.0.0.1:%d/webhook", len(executor.actions), port)
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)
    return 0


def orders(settings: Settings, args: argparse.Namespace) -> int:
    knowledge = load_knowledge(settings)
    open_orders(settings, knowledge, reset=True)
    print(f"demo order store recreated at {settings.data.orders_db}")
    return 0


def nlu_review(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import open_review_log
    from bot.state.review import RedisReviewLog, to_rasa_yaml

    async def export() -> int:
        log_ = open_review_log(settings)
        try:
            items = await log_.items(args.limit)
        finally:
            if isinstance(log_, RedisReviewLog):
                await log_.aclose()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(to_rasa_yaml(items), encoding="utf-8")
        return len(items)

    count = asyncio.run(export())
    print(f"{count} message(s) exported to {args.out}: label them, then merge into {settings.data.nlu}")
    return 0


def _trained_data_hash(model_dir: Path) -> str | None:
    """The data hash an existing model was trained on, or None when there is no usable model."""
    try:
        return str(json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8"))["data_hash"])
    except (OSError, ValueError, KeyError):
        return None


def _examples(path: Path) -> list[Example]:
    try:
        return load_examples(path)
    except (DatasetError, OSError) as exc:
        raise UserError(str(exc)) from exc


def _classifier(settings: Settings) -> IntentClassifier:
    try:
        return IntentClassifier.load(settings.nlu.model_dir, products=product_names(load_catalog(settings)),
                                     threads=settings.nlu.threads, runtime=settings.nlu.runtime)
    except ModelNotFoundError as exc:
        raise UserError(str(exc)) from exc


def require_model(settings: Settings) -> None:
    if not (settings.nlu.model_dir / METADATA_FILE).is_file():
        raise UserError(f"no trained intent model in {settings.nlu.model_dir}: run `shopbot train` first")
