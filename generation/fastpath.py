"""GPT-2's forward pass written out in plain tensor operations, for decoding on a CPU.

The compact generator is 5 M parameters: a decoding step for 8 rows is under 0.1 GFLOP, and what
it costs is reading the weights and the framework around the arithmetic: `GPT2LMHeadModel`'s
argument handling, cache objects, 4-d mask building, attention dispatch and output classes, paid
on every step and layer. `CompactForward` runs the same weights through the same operations
(LayerNorm, fused QKV projection, scaled dot-product attention, tanh-GELU MLP, tied LM head)
without them, and keeps the KV cache in the shape `DecodingBatch` manages (`cache.layers[i]
.keys/.values`: rows, heads, columns, head size), with room to append in place. On this machine
one stream went from 153 to about 460 tokens/s (bench/RESULTS.md).

It holds references to the model's own parameters (only the LM head is copied, transposed), so
it serves whatever `Generator.load` loaded; weights changed afterwards are not seen. Only
GPT-2-family models with the standard attention are supported (`CompactForward.supports`);
anything else runs through the model's own forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

_ACTIVATIONS = {"gelu_new": lambda x: F.gelu(x, approximate="tanh"), "gelu_pytorch_tanh":
                lambda x: F.gelu(x, approximate="tanh"), "gelu": F.gelu, "relu": F.relu}


#: columns of room a layer's cache gets whenever it must grow (appending is then a write, not a copy)
GROW = 64


class _Columns:
    """Keys or values, (rows, heads, columns, head size), with spare columns to append into in place.

    Appending by `torch.cat` copies the whole cache every step (8 rows x 120 columns is 1 MB per
    tensor, 8 tensors per step): a write into room made once every `GROW` steps costs a column.
    """

    def __init__(self, states: torch.Tensor) -> None:
        self.buffer, self.length = states, states.shape[2]

    def view(self) -> torch.Tensor:
        return self.buffer[:, :, : self.length]

    def append(self, new: torch.Tensor) -> torch.Tensor:
        end = self.length + new.shape[2]
        if end > self.buffer.shape[2]:
            rows, heads, _, size = self.buffer.shape
            grown = self.buffer.new_empty((rows, heads, end + GROW, size))
            grown[:, :, : self.length] = self.view()
            self.buffer = grown
        self.buffer[:, :, self.length : end] = new
        self.length = end
        return self.view()


class LayerCache:
    """One layer's keys and values; `DecodingBatch` reads and replaces them as whole tensors."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self._keys, self._values = _Columns(keys), _Columns(values)

    @property
    def keys(self) -> torch.Tensor:
        return self._keys.view()

    @keys.setter
    def keys(self, states: torch.Tensor) -> None:
        self._keys = _Columns(states)

    @property
    def values(self) -> torch.Tensor:
        return self._values.view()

    @values.setter
    def values(self, states: torch.Tensor) -> None:
        self._values = _Columns(states)

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new columns; all keys and values so far."""
        return self._keys.append(keys), self._values.append(values)


@dataclass
class Cache:
    layers: list[LayerCache]


@dataclass
class Output:
    logits: torch.Tensor  # (rows, positions kept, vocab)
    cache: Cache


class CompactForward:
    """`model(input_ids, attention_mask, position_ids, cache, logits_to_keep)` for a GPT2LMHeadModel."""

    def __init__(self, model: Any) -> None:
        if not self.supports(model):
            raise ValueError(f"{type(model).__name__} is not a plain GPT-2 model")
        config = model.config
        self.heads = config.n_head
        self.head_size = config.n_embd // config.n_head
        self.eps = config.layer_norm_epsilon
        self.scale = 1 / math.sqrt(self.head_size) if config.scale_attn_weights else 1.0
        self.act = _ACTIVATIONS[config.activation_function]
        body = model.transformer
        self.wte, self.wpe, self.ln_f = body.wte.weight, body.wpe.weight, body.ln_f
        self.blocks = body.h
        # The LM head as (hidden, vocab), contiguous: (rows, hidden) @ (hidden, vocab) runs 2.4x faster
        # than through the transposed view of the (vocab, hidden) weight (378 against 921 us for 8
        # rows and an 8k vocabulary on one core). A copy, taken when serving starts.
        self.head = model.lm_head.weight.detach().T.contiguous()

    @staticmethod
    def supports(model: Any) -> bool:
        config = getattr(model, "config", None)
        return (
            type(model).__name__ == "GPT2LMHeadModel"
            and config is not None
            and config.activation_function in _ACTIVATIONS
            and not config.scale_attn_by_inverse_layer_idx
            and not config.reorder_and_upcast_attn
            and not config.add_cross_attention
        )

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                 cache: Cache | None = None, logits_to_keep: int = 0, **_: Any) -> Output:
        """Logits for the last `logits_to_keep` positions (0: all) and the cache with the new columns.

        `attention_mask` (rows, cached + new columns) is 1 where a column holds a real token;
        `input_ids` and `position_ids` are (rows, new columns). Padding sits on the left.
        """
        rows, new = input_ids.shape
        hidden = self.wte[input_ids] + self.wpe[position_ids]  # (rows, new, hidden)
        allowed = self._allowed(attention_mask, new)  # (rows, 1, new, columns)
        layers = []
        for index, block in enumerate(self.blocks):
            past = cache.layers[index] if cache is not None else None
            attended, layer = self._attention(block, F.layer_norm(hidden, hidden.shape[-1:], block.ln_1.weight,
                                                                  block.ln_1.bias, self.eps), past, allowed)
            hidden = hidden + attended
            inner = F.layer_norm(hidden, hidden.shape[-1:], block.ln_2.weight, block.ln_2.bias, self.eps)
            mlp = block.mlp
            grown = self.act(self._linear(mlp.c_fc, inner.reshape(-1, inner.shape[-1])))
            hidden = hidden + self._linear(mlp.c_proj, grown).view_as(hidden)
            layers.append(layer)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        hidden = self.ln_f(hidden)
        return Output(hidden @ self.head, Cache(layers))

    def _attention(self, block: Any, x: torch.Tensor, past: LayerCache | None,
                   allowed: torch.Tensor) -> tuple[torch.Tensor, LayerCache]:
        rows, new, width = x.shape
        attn = block.attn
        qkv = self._linear(attn.c_attn, x.reshape(-1, width))  # (rows*new, 3*width)
        q, k, v = qkv.view(rows, new, 3, self.heads, self.head_size).permute(2, 0, 3, 1, 4)  # (rows, heads, new, hs)
        if past is None:
            layer = LayerCache(k, v)
        else:  # the cache is extended in place: the caller's `cache` now holds the new columns too
            layer = past
            k, v = layer.append(k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=self.scale)
        out = out.transpose(1, 2).reshape(rows * new, width)
        return self._linear(attn.c_proj, out).view(rows, new, width), layer

    @staticmethod
    def _linear(conv: Any, x: torch.Tensor) -> torch.Tensor:
        """GPT-2's Conv1D (x @ W + b, W stored (in, out)) on (positions, in)."""
        return torch.addmm(conv.bias, x, conv.weight)

    @staticmethod
    def _allowed(attention_mask: torch.Tensor, new: int) -> torch.Tensor:
        """Which columns each new position may attend to: real tokens at or before it.

        A padding position (left of a row's prompt) attends to itself only, so that no row of the
        softmax is empty; its output is never read by a real position.
        """
        columns = attention_mask.shape[1]
        real = attention_mask.bool()[:, None, None, :]  # (rows, 1, 1, columns)
        if new == 1:
            return real
        past = columns - new
        query = torch.arange(past, columns)[:, None]  # (new, 1): each new position's column
        causal = torch.arange(columns)[None, :] <= query  # (new, columns)
        own = torch.arange(columns)[None, :] == query
        return (real & causal) | own
