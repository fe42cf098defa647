"""Serving-time int8: dynamic quantisation of the encoder's Linear layers.

On CPU a single message through a 6-layer MiniLM is bound by framework overhead and a batch by
the fp32 matrix products; int8 weights with activations quantised on the fly (`quantize_dynamic`)
cut both, with no calibration data and no new dependency (FIELD_NOTES: ~2.4x single message,
~3.7x batch of 32, the same predictions on 400 messages).

What stays fp32, and why:
- the embedding tables: `quantize_dynamic` only rewrites `nn.Linear` (and RNNs), and a lookup
  costs nothing to speed up;
- the classifier head: one small product per message, and it turns embeddings into the logits
  the router's confidence threshold reads;
- the pooler: its output is the sentence embedding the out-of-scope detector was fitted on in
  fp32, so only the encoder's rounding reaches the Mahalanobis scores, not a second layer's.

The detector's threshold was still calibrated on fp32 embeddings: the scores move more than the
embeddings do (tests/nlu/test_serving.py), so calibrate it on the int8 model before relying on
it. torch 2.13 marks `torch.ao.quantization` deprecated in favour of torchao (a DeprecationWarning
at load time); it still works, and this module is the one place to change when it goes.
"""

from __future__ import annotations

import torch
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

# Module-name components whose Linear layers keep fp32 weights (BERT, DistilBERT, RoBERTa ...).
FP32_MODULES = frozenset({"classifier", "pooler", "pre_classifier"})


def quantize_for_serving(model: torch.nn.Module) -> torch.nn.Module:
    """An int8 copy of `model` for CPU inference: encoder Linear layers quantised, the rest fp32.

    `model` is only switched to eval mode. Activations are quantised with one scale per forward
    pass (padding included), so a message's scores can shift slightly with the batch it shares.
    """
    model.eval()  # quantize_dynamic expects an inference model (dropout off)
    names = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
             and not FP32_MODULES.intersection(name.split("."))}
    # Per-channel int8 weights (one scale per output row: rows of a fine-tuned layer differ in
    # range, and a shared scale would flatten the small ones), activations quantised per batch at
    # run time; modules not named keep their fp32 weights.
    spec = dict.fromkeys(names, per_channel_dynamic_qconfig)
    return quantize_dynamic(model, qconfig_spec=spec, dtype=torch.qint8, inplace=False)
