"""What runs the fine-tuned encoder: torch in fp32 (training, reference) or ONNX Runtime in int8 (serving).

Both take token ids and an attention mask as numpy arrays and return, from one forward pass, the
logits and the sentence embedding that feeds the classifier head (the out-of-scope detector's
input). The classifier above them tokenises, batches and decides; it never knows which runs.

Serving on CPU: one message through a 6-layer MiniLM is bound by framework overhead, a batch by
matrix products. ONNX Runtime with the transformer graph fused (attention, GELU) and int8
weights (activations quantised on the fly, no calibration data) cuts both; FIELD_NOTES
measured 0.7 ms a message against 5.7 ms for eager torch. The export happens once, at training
time, into the model directory (`model.int8.onnx`).

Four measured choices (`bench/intent_graph.py`, `bench/intent_serving.py`, onnxruntime 1.32 on 2 cores):
- The residual Add and the LayerNorm stay two operators. The fused SkipLayerNormalization took
  1.33 ms for 1,280 tokens where Add + LayerNormalization took 0.34 ms; it had been 18 % of a
  forward pass.
- A batch the classifier cut into length groups runs its groups side by side, one
  single-threaded run per core, rather than one after the other on all cores. The groups are
  small (about 8 messages of a 64-message batch each), and side by side was 1.03x to 1.33x as
  fast, never clearly slower.
- The last layer computes the first token alone, the only one the classifier head reads
  (`first_token_last_layer`): batches 1.07x to 1.09x as fast. A lone message was 0.04 to 0.23 ms
  slower (the last layer's operators are not fused) until that layer masked padding with the
  input mask itself, instead of the 4-D mask the encoder builds for it (~35 shape operators), and
  BERT's segment ids were given rather than sliced from a buffer (~15 more): now 1.00x.
- A lone batch runs on a second session with an intra-op thread per core, when that times at
  least 10 % faster at load (`faster_than`): the gain depends on the CPU. An AMD EPYC with AVX2
  only: one message 2.76 ms against 3.82 ms on one thread. An AMD EPYC with AVX-512 VNNI: a
  two-thread session was about 7 % faster, at twice the CPU time, so one thread stays.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from types import MethodType
from typing import Any, Protocol

import numpy as np
import torch

ONNX_FILE = "model.int8.onnx"
OPSET = 17
# Nodes whose weights stay fp32: the head turns embeddings into the confidences the router
# thresholds, and the pooler's output is the embedding the out-of-scope detector measures.
FP32_NODES = ("classifier", "pooler")
# The feed-forward blocks' output projections (`layer.N/output/dense`, not the attention's
# `layer.N/attention/output/dense`), kept fp32 only when the fully quantised graph loses too
# much. On BANKING77 with MPNet-base, validation accuracy lost 0.47 points fully int8 and 0.20
# with these in fp32; keeping the feed-forward inputs or the last two layers in fp32 did not help.
FFN_OUTPUT_NODES = (re.compile(r"layer\.\d+/output/dense"),)
# ONNX Runtime's own fusion of residual Add + LayerNormalization, undone at export and kept off
# at load (it would fuse them again), and in graphs exported before: see the module docstring.
UNFUSED = ("SkipLayerNormFusion",)

Batch = tuple[np.ndarray, np.ndarray]  # input_ids, attention_mask: (batch, tokens) int64 each


class Encoder(Protocol):
    """(input_ids, attention_mask), both (batch, tokens) int64 -> logits (batch, labels), embeddings (batch, hidden).

    `workers`: how many batches `map` runs at once (so how many a caller should cut its work into).
    """

    workers: int

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def map(self, batches: Sequence[Batch]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every batch's outputs, in the order of `batches` (however the encoder schedules them)."""
        ...


class TorchEncoder:
    """The model as it is, in whatever mode its owner set (training toggles eval for scoring)."""

    workers = 1

    def __init__(self, model: Any) -> None:
        self.model = model

    @torch.inference_mode()
    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embeddings = _HeadInputs(self.model)(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        return logits.float().numpy(), embeddings.float().numpy()

    def map(self, batches: Sequence[Batch]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One batch after the other: torch already spreads each one over its threads."""
        return [self(ids, mask) for ids, mask in batches]


class OnnxEncoder:
    """An ONNX Runtime session over `model.int8.onnx`, run by `workers` threads at once.

    Each run is single-threaded (`intra_op_num_threads=1`), so concurrent runs of the one session
    (ONNX Runtime allows them) each keep a core busy; `workers` defaults to the cores this
    process may use. A lone batch runs on the calling thread, on a second session that spreads
    each operator over `workers` threads when that is faster on this CPU: `lone_threads` None
    decides at load by timing both sessions on a message (`faster_than`), 1 keeps one thread.
    """

    def __init__(self, path: str | Path, workers: int = 0, lone_threads: int | None = None) -> None:
        self.path = Path(path)
        self.workers = workers if workers > 0 else usable_cores()
        self._session = self._open(1)
        self._lone = self._session  # runs a lone batch, while the other cores are idle
        threads = self.workers if lone_threads is None else lone_threads
        if threads > 1:
            spread = self._open(threads)
            if lone_threads is not None or faster_than(spread, self._session):
                self._lone = spread
        self.lone_threads = threads if self._lone is not self._session else 1
        self._pool: ThreadPoolExecutor | None = None  # started by the first `map` with work to share

    def _open(self, threads: int) -> Any:
        import onnxruntime as ort  # serving only: training and tests of the torch path never load it

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        return ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(UNFUSED)
        )

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embeddings = self._session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        return logits, embeddings

    def map(self, batches: Sequence[Batch]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Run the batches side by side, the largest first so that the workers finish together."""
        if len(batches) == 1:
            ids, mask = batches[0]
            logits, embeddings = self._lone.run(None, {"input_ids": ids, "attention_mask": mask})
            return [(logits, embeddings)]
        if self.workers < 2:
            return [self(ids, mask) for ids, mask in batches]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="shopbot-onnx")
            weakref.finalize(self, self._pool.shutdown, wait=False)  # an encoder dropped unclosed
        largest_first = sorted(range(len(batches)), key=lambda i: -batches[i][0].size)
        futures = {i: self._pool.submit(self, *batches[i]) for i in largest_first}
        return [futures[i].result() for i in range(len(batches))]

    def close(self) -> None:
        """Stop the worker threads (the session itself is freed with the object)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def faster_than(candidate: Any, current: Any, tokens: int = 16, rounds: int = 15, margin: float = 0.9) -> bool:
    """Whether session `candidate` runs a lone message of `tokens` tokens in under `margin` times
    the time `current` takes: the median of `rounds` runs each, taking turns, after a warm-up."""
    ones = np.ones((1, tokens), dtype=np.int64)  # any ids: the arithmetic is the same
    feed = {"input_ids": ones, "attention_mask": ones}
    timed: tuple[tuple[Any, list[float]], ...] = ((candidate, []), (current, []))
    for round_ in range(rounds + 2):
        for session, times in timed if round_ % 2 else timed[::-1]:
            started = time.perf_counter()
            session.run(None, feed)
            if round_ >= 2:  # two rounds warm both up
                times.append(time.perf_counter() - started)
    (_, candidate_times), (_, current_times) = timed
    return float(np.median(candidate_times)) < margin * float(np.median(current_times))


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    """The CPU's name and its widest int8 matrix instructions, as Linux reports them: benchmarks
    record it, as speeds and their ratios differ between CPU families (e.g. "AMD EPYC, AVX2")."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    for flag, label in (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in flags:
            return f"{name}, {label}"
    return name


def export_onnx(
    model: Any,
    output: str | Path,
    num_heads: int,
    hidden_size: int,
    keep_fp32: Sequence[str | re.Pattern[str]] = (),
    *,
    first_token_only: bool = True,
) -> Path:
    """Write `model` as a fused, int8-quantised ONNX graph at `output`; `model` is switched to eval.

    Three steps through temporary files: trace the model (fp32), fuse the BERT graph with ONNX
    Runtime's transformer optimizer (all but the residual LayerNorms, `UNFUSED`), quantise the
    fused graph's MatMul weights to int8 per channel. Head and pooler stay fp32 (`FP32_NODES`),
    and so does every node whose name holds one of `keep_fp32` (substrings or compiled patterns,
    e.g. `FFN_OUTPUT_NODES`). The last layer only computes the first token where the architecture
    allows (`first_token_last_layer`; `first_token_only=False` keeps it whole, for comparison).
    """
    model.eval()
    # Trace the plain attention (softmax of QK^T plus the mask): the pattern the fuser turns into
    # one Attention operator. The SDPA path exports as masks built from Where/IsNaN it cannot match.
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with first_token_last_layer(model) if first_token_only else nullcontext(False):
            return _export(model, Path(output), num_heads, hidden_size, (*FP32_NODES, *keep_fp32))
    finally:
        model.set_attn_implementation(previous)


@contextmanager
def first_token_last_layer(model: Any) -> Iterator[bool]:
    """Within the block, `model`'s last encoder layer computes its output for the first token only.

    A BERT or MPNet sequence classifier reads the last layer at one position, the first token
    ([CLS] / <s>, through BERT's pooler or MPNet's head); the outputs for every other token are
    computed and thrown away. Only the keys and values need every token, so the layer can take its
    query, attention output and feed-forward block at the first token alone: the same numbers (up
    to float rounding), a sixth less work for MiniLM-L6's six layers (`bench/intent_graph.py`).
    Yields whether the layer was swapped: other architectures export as they are.
    """
    from transformers import BertForSequenceClassification, MPNetForSequenceClassification

    forward: Callable[..., Any]
    if isinstance(model, BertForSequenceClassification):
        layer, forward = model.bert.encoder.layer[-1], _bert_first_token
    elif isinstance(model, MPNetForSequenceClassification):
        layer, forward = model.mpnet.encoder.layer[-1], _mpnet_first_token
    else:
        yield False
        return
    # The layer masks padding with the model's own (batch, tokens) input rather than the 4-D
    # mask the encoder builds from it: in the exported graph that mask took ~35 shape operators,
    # kept for this layer alone (the fused attention before it reads the input mask).
    padding: list[torch.Tensor | None] = [None]

    def keep_mask(_model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        padding[0] = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    hook = model.register_forward_pre_hook(keep_mask, with_kwargs=True)
    layer.forward = MethodType(partial(forward, padding=padding), layer)  # the module stays: its node names too
    try:
        yield True
    finally:
        del layer.forward
        hook.remove()


def _bert_first_token(layer: Any, hidden_states: torch.Tensor, *args: Any,
                      padding: Sequence[torch.Tensor | None], **kwargs: Any) -> torch.Tensor:
    """`BertLayer.forward` for the first token's output alone: (batch, tokens, hidden) -> (batch, 1, hidden).

    `padding[0]`: the model's (batch, tokens) attention mask, 1 for a token, 0 for padding (or None).
    """
    attention, heads = layer.attention, layer.attention.self
    first = hidden_states[:, :1]
    context = _first_token_attention(hidden_states, heads.query, heads.key, heads.value, heads.attention_head_size,
                                     heads.scaling, _padding_bias(padding[0], hidden_states.dtype))
    attended = attention.output(context, first)  # dense, then LayerNorm with the first token's input added
    return layer.feed_forward_chunk(attended)


def _mpnet_first_token(layer: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       position_bias: torch.Tensor | None = None, *args: Any,
                       padding: Sequence[torch.Tensor | None], **kwargs: Any) -> tuple[torch.Tensor]:
    """`MPNetLayer.forward` for the first token's output alone (its relative position bias included)."""
    attention, heads = layer.attention, layer.attention.attn
    first = hidden_states[:, :1]
    context = _first_token_attention(hidden_states, heads.q, heads.k, heads.v, heads.attention_head_size,
                                     heads.attention_head_size**-0.5, _padding_bias(padding[0], hidden_states.dtype),
                                     position_bias)
    attended = attention.LayerNorm(heads.o(context) + first)
    return (layer.output(layer.intermediate(attended), attended),)


def _padding_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A (batch, tokens) 1/0 attention mask as an additive score bias, (batch, 1, 1, tokens): 0 or dtype's min."""
    if mask is None:
        return None
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def _first_token_attention(
    hidden_states: torch.Tensor,
    query: torch.nn.Module,
    key: torch.nn.Module,
    value: torch.nn.Module,
    size: int,
    scaling: float,
    *biases: torch.Tensor | None,
) -> torch.Tensor:
    """The first token's attention over every token, all heads: (batch, tokens, hidden) -> (batch, 1, hidden).

    `biases` are additive (batch or 1, heads or 1, queries, tokens) score terms (the padding mask,
    a position bias); their first query's row is the one that applies.
    """
    batch, tokens = hidden_states.shape[:2]
    q = query(hidden_states[:, :1]).view(batch, 1, -1, size).transpose(1, 2)  # (batch, heads, 1, size)
    k = key(hidden_states).view(batch, tokens, -1, size).transpose(1, 2)  # (batch, heads, tokens, size)
    v = value(hidden_states).view(batch, tokens, -1, size).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scaling  # (batch, heads, 1, tokens)
    for bias in biases:
        if bias is not None:
            scores = scores + bias[..., :1, :]
    context = torch.matmul(scores.softmax(dim=-1), v)  # (batch, heads, 1, size)
    return context.transpose(1, 2).reshape(batch, 1, -1)


def _export(
    model: Any, output: Path, num_heads: int, hidden_size: int, keep_fp32: Sequence[str | re.Pattern[str]]
) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    with tempfile.TemporaryDirectory(prefix="shopbot-onnx-") as scratch:
        traced, fused = Path(scratch) / "model.onnx", Path(scratch) / "model.fused.onnx"
        example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
        torch.onnx.export(
            # In eval mode: the exporter leaves the module it was given, and every submodule, in
            # that module's mode, and a fresh wrapper is in training mode (dropout on afterwards).
            _HeadInputs(model).eval(),
            example,
            str(traced),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits", "embeddings"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask")}
            | {name: {0: "batch"} for name in ("logits", "embeddings")},
            opset_version=OPSET,
            dynamo=False,
        )
        fusions = FusionOptions("bert")
        fusions.enable_skip_layer_norm = fusions.enable_bias_skip_layer_norm = False  # see UNFUSED
        optimized = optimizer.optimize_model(
            str(traced), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
            optimization_options=fusions,
        )
        optimized.save_model_to_file(str(fused))
        keep = [node.name for node in optimized.model.graph.node if _matches(node.name, keep_fp32)]
        keep += [f"{name}_MatMul" for name in keep]  # the quantiser splits a Gemm into MatMul + Add first
        # The fused graph holds ONNX Runtime's own operators, which shape inference cannot type:
        # every tensor it cannot type is fp32 here.
        quantize_dynamic(fused, output, weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return output


def _matches(name: str, patterns: Sequence[str | re.Pattern[str]]) -> bool:
    return any(p.search(name) if isinstance(p, re.Pattern) else p in name for p in patterns)


class _HeadInputs(torch.nn.Module):
    """The classifier with the input of its head as a second output: logits and embeddings in one pass."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if hasattr(getattr(self.model.base_model, "embeddings", None), "token_type_embeddings"):
            # Segment 0 everywhere, as the encoder would assume: given, it exports as one operator,
            # where the encoder's own default (a slice of a buffer) took fifteen.
            inputs["token_type_ids"] = torch.zeros_like(input_ids)
        head = getattr(self.model, "classifier", None)
        if isinstance(head, torch.nn.Module):
            with _inputs_of(head) as seen:
                logits = self.model(**inputs).logits  # (batch, labels)
            embeddings = seen[0]  # BERT: dropout(tanh(pooler([CLS]))), (batch, hidden)
        else:  # no `classifier` submodule to watch: the last layer's first token instead
            output = self.model(**inputs, output_hidden_states=True)
            logits, embeddings = output.logits, output.hidden_states[-1]
        if embeddings.dim() == 3:  # heads like RoBERTa's take (batch, tokens, hidden) and use token 0
            embeddings = embeddings[:, 0]
        return logits, embeddings


@contextmanager
def _inputs_of(head: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the first input `head` receives during the forward pass inside the block.

    A hook rather than running the encoder and head by hand: one pass gives both the logits and
    the embedding, for any model with a `classifier` submodule (BERT, DistilBERT, RoBERTa,
    ELECTRA, DeBERTa ...), whatever its pooling.
    """
    seen: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        seen.append(args[0])

    handle = head.register_forward_pre_hook(keep)
    try:
        yield seen
    finally:
        handle.remove()
