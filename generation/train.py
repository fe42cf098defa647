"""Train the grounded GPT-2 generator: a byte-level BPE tokenizer and a compact model, from data/.

The corpus is `generation.corpus` (templates written for this project, values drawn at random so
copying from the prompt is the only way to be right). The loss counts only the reply tokens: the
model is never asked to predict the knowledge passages or the shopper's words, only what the bot
says given them. `base_model` may instead name a GPT-2 checkpoint (directory or hub id) to
fine-tune; its own tokenizer is kept and the prompt markers are added to it.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import ByteLevelBPETokenizer
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

from generation.corpus import Sample
from generation.prompt import END, SPECIAL_TOKENS, training_text
from nlu.artifacts import save_atomically

METADATA_FILE = "shopbot_generator.json"
IGNORE = -100  # label of a token the loss skips (prompt, padding)


@dataclass(frozen=True)
class GeneratorConfig:
    """Every hyperparameter of generator training, in one place."""

    base_model: str = ""  # "" = a compact GPT-2 trained from scratch; or a checkpoint directory / hub id
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_positions: int = 512
    vocab_size: int = 8_000
    steps: int = 1_800
    batch_size: int = 16
    learning_rate: float = 1e-3  # from scratch; fine-tuning a checkpoint wants ~1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    max_length: int = 384  # tokens of prompt + reply; longer examples are cut from the left
    max_minutes: float = 20.0  # stop early (and say so) rather than run past this
    seed: int = 7
    threads: int = 0


@dataclass(frozen=True)
class GeneratorResult:
    output_dir: Path
    validation_loss: float
    validation_perplexity: float
    steps: int
    train_seconds: float
    parameters: int
    stopped_early: bool


def train_generator(
    train: Sequence[Sample],
    validation: Sequence[Sample],
    output_dir: str | Path,
    config: GeneratorConfig = GeneratorConfig(),
    progress: bool = True,
) -> GeneratorResult:
    """Train on `train`, report reply-token perplexity on `validation`, save model + tokenizer + metadata."""
    if not train:
        raise ValueError("generator training needs at least one example")
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    pairs = [training_text(s.passages, s.history, s.reply) for s in train]
    tokenizer, model = _model_and_tokenizer(config, pairs)
    examples = [encode_example(tokenizer, prompt, reply, config.max_length) for prompt, reply in pairs]
    held_out = [encode_example(tokenizer, *training_text(s.passages, s.history, s.reply), config.max_length)
                for s in validation]
    started = time.perf_counter()
    steps, stopped_early = _fit(model, tokenizer, examples, config, progress, started)
    seconds = time.perf_counter() - started
    loss = mean_reply_loss(model, tokenizer, held_out, config.batch_size) if held_out else math.nan
    result = GeneratorResult(
        output_dir=Path(output_dir).resolve(),
        validation_loss=loss,
        validation_perplexity=math.exp(loss) if math.isfinite(loss) else math.nan,
        steps=steps,
        train_seconds=seconds,
        parameters=sum(p.numel() for p in model.parameters()),
        stopped_early=stopped_early,
    )
    metadata = {
        "config": asdict(config),
        "n_train": len(train),
        "n_validation": len(validation),
        "metrics": {"validation_loss": round(loss, 4), "validation_perplexity": round(result.validation_perplexity, 3),
                    "steps": steps, "train_seconds": round(seconds, 1), "stopped_early": stopped_early},
        "parameters": result.parameters,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _save(model, tokenizer, metadata, result.output_dir)
    return result


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> GPT2Tokenizer:
    """A byte-level BPE (GPT-2's scheme: any text encodes, nothing is unknown) learnt from `texts`."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS))
    tokenizer = GPT2Tokenizer(tokenizer_object=bpe._tokenizer, eos_token=END, bos_token=END, unk_token=END,
                                  pad_token=END)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in SPECIAL_TOKENS if t != END]})
    return tokenizer


def _model_and_tokenizer(config: GeneratorConfig, pairs: Sequence[tuple[str, str]]) -> tuple[Any, Any]:
    if config.base_model:  # fine-tune a checkpoint with its own tokenizer, plus our markers
        tokenizer = AutoTokenizer.from_pretrained(config.base_model)
        tokenizer.add_special_tokens({"additional_special_tokens": [t for t in SPECIAL_TOKENS if t != END]})
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(config.base_model)
        model.resize_token_embeddings(len(tokenizer))
        return tokenizer, model
    tokenizer = train_tokenizer([p + r for p, r in pairs], config.vocab_size)
    model_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer, GPT2LMHeadModel(model_config)


def encode_example(tokenizer: Any, prompt: str, reply: str, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels; only the reply is learnt. Too long: the oldest prompt tokens go."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"][:max_length // 2]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(reply_ids) - max_length):]
    return prompt_ids + reply_ids, [IGNORE] * len(prompt_ids) + reply_ids


def _batch(tokenizer: Any, chosen: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask and labels, (batch, longest)."""
    longest = max(len(ids) for ids, _ in chosen)
    ids = torch.full((len(chosen), longest), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(chosen), longest), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(chosen), longest), dtype=torch.long)
    for row, (tokens, targets) in enumerate(chosen):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(targets)] = torch.tensor(targets)
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _batches(examples: Sequence[tuple[list[int], list[int]]], batch_size: int, rng: random.Random,
             ) -> Iterator[list[tuple[list[int], list[int]]]]:
    """Endless shuffled epochs; each batch drawn from messages of similar length (less padding)."""
    while True:
        order = list(range(len(examples)))
        rng.shuffle(order)
        # Sort within windows of 50 batches: similar lengths share a batch, the epoch stays shuffled.
        window = batch_size * 50
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: len(examples[i][0]))
            batches = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            rng.shuffle(batches)
            for batch in batches:
                yield [examples[i] for i in batch]


def _fit(model: Any, tokenizer: Any, examples: Sequence[tuple[list[int], list[int]]], config: GeneratorConfig,
         progress: bool, started: float) -> tuple[int, bool]:
    """AdamW, linear warmup then cosine decay over `config.steps`; stops at `max_minutes`."""
    decayed = [p for n, p in model.named_parameters() if p.dim() >= 2]
    plain = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": config.weight_decay},
                                   {"params": plain, "weight_decay": 0.0}], lr=config.learning_rate, betas=(0.9, 0.95))

    def rate(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress_ = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))  # down to 10 % of the peak

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    batches = _batches(examples, config.batch_size, random.Random(config.seed))
    model.train()
    with tqdm(total=config.steps, desc="generator", unit="step", disable=not progress) as bar:
        for step in range(config.steps):
            loss = model(**_batch(tokenizer, next(batches))).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if time.perf_counter() - started > config.max_minutes * 60:
                return step + 1, True
    return config.steps, False


@torch.inference_mode()
def mean_reply_loss(
    model: Any, tokenizer: Any, examples: Sequence[tuple[list[int], list[int]]], batch_size: int
) -> float:
    """Mean cross-entropy per reply token (the exponent of the perplexity)."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = _batch(tokenizer, examples[start : start + batch_size])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]  # token t is predicted from the tokens before it
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE,
            reduction="sum")
        total += float(losses)
        count += int((targets != IGNORE).sum())
    return total / max(1, count)


def _save(model: Any, tokenizer: Any, metadata: dict[str, Any], output: Path) -> None:
    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")

    save_atomically(output, write)
