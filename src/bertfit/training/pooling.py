"""Mean pooling in BERT's own terms: the layer the contrastive method adds, and its cheap stand-in for training.

The embedded body is a sentence encoder trained with *mean* pooling, while BERT's classification
head reads the first token. :func:`append_mean_pooling` adds one more encoder layer that turns the
first token into the layer-normalised mean of all tokens: its queries are zero, so every score is
equal and attention averages the (unmasked) tokens; its values pass the hidden states through; the
attention output is scaled by ``MEAN_SCALE`` so that the residual first token is a rounding error
beside the mean, and LayerNorm removes the scale; its feed-forward part adds zero. The pooler then
maps that vector to ``tanh(x / sqrt(hidden))``, about a unit vector. The saved folder is then an
ordinary ``BertForSequenceClassification``.

While the body trains, :class:`PooledBody` computes the same first-token output from the mean
alone (:func:`pooled_through`) rather than running the added layer over every token
(``bench/pair_steps.py`` times the two).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch

from bertfit.training.backbone import encoder_stack

MEAN_SCALE = 1000.0  # the mean's weight against the residual first token in the added layer


def append_mean_pooling(model: Any, layer: Any = None) -> None:
    """Add an encoder layer whose first-token output is the layer-normalised mean of the tokens below it.

    See the module docstring; the layer (``layer``, or a new :func:`mean_pooling_layer`) and the pooler
    are frozen. (batch, seq, hidden) in, the same out; only position 0 is read by the pooler.
    """
    parent, name = encoder_stack(model)
    getattr(parent, name).append(mean_pooling_layer(model) if layer is None else layer)
    model.config.num_hidden_layers = len(getattr(parent, name))


def mean_pooling_layer(model: Any) -> Any:
    """The layer :func:`append_mean_pooling` adds, not yet added; sets the pooler too. Both frozen."""
    parent, name = encoder_stack(model)
    layer = copy.deepcopy(getattr(parent, name)[-1])
    hidden = model.config.hidden_size
    identity = torch.eye(hidden)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.zero_()  # zero queries: uniform attention; zero feed-forward: adds nothing
        layer.attention.self.value.weight.copy_(identity)
        layer.attention.output.dense.weight.copy_(identity * MEAN_SCALE)
        layer.attention.output.LayerNorm.weight.fill_(1.0)
        layer.output.LayerNorm.weight.fill_(1.0)
        pooler = model.base_model.pooler.dense
        pooler.weight.copy_(identity / math.sqrt(hidden))  # tanh stays near-linear; norm about 1
        pooler.bias.zero_()
    for module in layer.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # an average over tokens, not a random subset of them
    for parameter in [*layer.parameters(), *model.base_model.pooler.parameters()]:
        parameter.requires_grad = False
    return layer


def pooled_through(layer: Any, pooler: Any, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the pooler outputs once ``layer`` is on top of ``hidden`` (batch, seq, width), at a fraction of the cost.

    The layer's queries are zero, so its first token attends evenly to the unmasked tokens: its
    attention reads their mean, and the rest of the layer works on that one vector. The whole layer
    would run over every token for one output; this is the same arithmetic on the first token alone
    (tests/test_contrastive.py checks the two agree).
    """
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    attended = layer.attention.output.dense(layer.attention.self.value(mean))
    first = layer.attention.output.LayerNorm(attended + hidden[:, 0])
    out = layer.output.LayerNorm(layer.output.dense(layer.intermediate(first)) + first)
    return pooler(out.unsqueeze(1))


class PooledBody(torch.nn.Module):
    """The body as it trains on pairs: its own layers, then :func:`pooled_through` the frozen added layer."""

    def __init__(self, body: Any, layer: Any):
        super().__init__()
        self.body, self.layer = body, layer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return pooled_through(self.layer, self.body.pooler, hidden, attention_mask)


def embed(body: Any, encoded: dict[str, list], tokenizer: Any, batch_size: int) -> np.ndarray:
    """(texts, hidden) pooler outputs of tokenized texts, in eval mode, batches sorted by length."""
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    out = np.zeros((len(order), body.config.hidden_size), dtype=np.float32)
    was_training = body.training
    body.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = tokenizer.pad({key: [values[i] for i in index] for key, values in encoded.items()},
                                  return_tensors="pt")
            out[index] = body(**batch).pooler_output.float().numpy()
    body.train(was_training)
    return out
