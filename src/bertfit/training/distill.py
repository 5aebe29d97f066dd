"""Knowledge distillation: train a small student to match a fine-tuned teacher (Hinton et al., 2015).

The student is a given checkpoint, or the teacher cut to N encoder layers (every k-th kept, the
embeddings, pooler and head copied), with the teacher's tokenizer and labels. The teacher is
frozen, so its logits are computed once per text before training; each student step then costs
what ordinary training costs. The loss, per batch:

    alpha x T^2 x KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) x cross-entropy(labels)

(multi-label: binary cross-entropy against the teacher's sigmoid(teacher / T), and against the
labels); :class:`DistillationTrainer` is bertfit's trainer with that loss for training batches.
Validation picks the epoch by the same rule as ``train``, and everything after training
(thresholds, calibration, test scoring, the baseline and its blend, saving) is ``training.fit``'s.
A teacher that blends in its TF-IDF baseline teaches with its transformer's logits alone:
on the training rows the TF-IDF half has learnt the labels by heart and would hand the student little
but the labels again; the student's own run weighs its own blend on validation.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertfit.backends import refuse_without_weights
from bertfit.claims import claimed
from bertfit.config import check
from bertfit.data.cleaning import prepare
from bertfit.errors import DataError, UsageError
from bertfit.hub import check_hub_name
from bertfit.labels import LabelSet
from bertfit.model import TextClassifier
from bertfit.staging import check_folder, refuse_inputs
from bertfit.training.backbone import encoder_layers, encoder_stack, load_base
from bertfit.training.run import fit, split_settings
from bertfit.training.stages import Start
from bertfit.training.tracking import Tracking
from bertfit.training.trainer import ClassifierTrainer

log = logging.getLogger(__name__)

STUDENT_FIX = ("the student is trained from PyTorch weights: pass the folder bertfit train wrote, a downloaded "
               "checkpoint folder or a hub name, or --student-layers N instead")


def kept_layers(n_layers: int, n_keep: int) -> list[int]:
    """Every k-th layer, ending with the top one: 6 -> 2 keeps [2, 5], 6 -> 3 keeps [1, 3, 5], 12 -> 4 [2, 5, 8, 11]."""
    if not 1 <= n_keep < n_layers:
        raise UsageError(f"--student-layers must be between 1 and {n_layers - 1} (the teacher has {n_layers}), "
                         f"got {n_keep}")
    return [int(round(i)) for i in np.linspace(n_layers / n_keep - 1, n_layers - 1, n_keep)]


def truncated_student(teacher: TextClassifier, n_keep: int) -> Any:
    """A copy of the teacher with ``n_keep`` of its encoder layers (every k-th), everything else as it is."""
    student = copy.deepcopy(teacher.model)
    layers = encoder_layers(student)
    keep = kept_layers(len(layers), n_keep)
    parent, name = encoder_stack(student)
    stack = nn.ModuleList([layers[i] for i in keep])
    setattr(parent, name, stack)
    for index, layer in enumerate(stack):  # some architectures number their layers
        attention = getattr(layer, "attention", None)
        for module in (layer, attention, getattr(attention, "self", None)):
            if module is not None and hasattr(module, "layer_idx"):
                module.layer_idx = index
    student.config.num_hidden_layers = n_keep
    log.info("student: the teacher's encoder layers %s of %d, embeddings and head copied", keep, len(layers))
    return student, keep


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, hard: torch.Tensor, temperature: float,
                      alpha: float, multi_label: bool) -> torch.Tensor:
    """alpha x T^2 x soft loss (against the teacher) + (1 - alpha) x hard loss (``hard``, already computed)."""
    t = temperature
    if multi_label:
        soft = nn.functional.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t))
    else:
        soft = nn.functional.kl_div(nn.functional.log_softmax(student / t, dim=-1),
                                    nn.functional.log_softmax(teacher / t, dim=-1), log_target=True,
                                    reduction="batchmean")
    return alpha * t * t * soft + (1 - alpha) * hard


class DistillationTrainer(ClassifierTrainer):
    """bertfit's trainer whose training loss blends the teacher's logits in (``teacher_logits`` per row).

    Evaluation batches carry no teacher logits, so validation is scored by the label loss alone.
    """

    def __init__(self, *args: Any, temperature: float, alpha: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        self.alpha = alpha

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        inputs = dict(inputs)
        teacher = inputs.pop("teacher_logits", None)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits.float()
        loss = self.label_loss(logits, labels)
        if teacher is not None:
            loss = distillation_loss(logits, teacher.float(), loss, self.temperature, self.alpha, self.multi_label)
        return (loss, outputs) if return_outputs else loss


def _check_arguments(teacher_dir: str | Path, student: str | None, student_layers: int | None, temperature: float,
                     alpha: float, method: str) -> None:
    if method != "finetune":
        raise UsageError(f"distill trains its student by fine-tuning on the teacher's logits; method {method!r} "
                         "does not apply: leave it out")
    if (student is None) == (student_layers is None):
        raise UsageError("pass exactly one of --student NAME_OR_DIR or --student-layers N")
    if not temperature > 0:
        raise UsageError(f"--temperature must be above 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    refuse_without_weights(teacher_dir, "TEACHER_DIR", "bertfit distill needs the teacher's PyTorch folder, the one "
                           "bertfit train wrote: pass that folder")
    refuse_without_weights(student, "--student", STUDENT_FIX)


def _teacher_settings(teacher: TextClassifier) -> dict[str, Any]:
    """How the teacher read its data (columns, max length, long texts): the student's defaults."""
    record = teacher.record
    return {"text_col": record.text_col, "label_col": record.label_col, "text_pair_col": record.text_pair_col,
            "label_sep": record.label_sep, "max_length": teacher.max_length, "long_text": record.long_text.mode,
            "stride": record.long_text.stride, "window_pool": record.long_text.pool}


def distill(
    teacher_dir: str | Path,
    data: Any,
    out: str | Path | None = "bertfit-student",
    *,
    student: str | None = None,
    student_layers: int | None = None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    overwrite: bool = False,
    progress: bool = True,
    **settings: Any,
) -> Any:
    """Distil the model in ``teacher_dir`` into a student trained on ``data``; returns a TrainResult.

    ``settings`` are ``train``'s (epochs, learning_rate, ...); the data columns default to the teacher's.
    """
    _check_arguments(teacher_dir, student, student_layers, temperature, alpha, settings.get("method", "finetune"))
    teacher = TextClassifier.from_pretrained(teacher_dir, backend="torch")  # its weights are copied and cut
    settings = {**_teacher_settings(teacher), **settings, "method": "finetune"}
    settings = {k: v for k, v in settings.items() if v is not None}
    data_config, config = split_settings(settings)
    check(data_config, config)
    target = Path(out) if out is not None else None
    if target is not None:
        refuse_inputs(target, "--out", {"the teacher folder": teacher_dir, "the data": data if isinstance(
            data, str | Path) else None, "the --student folder": student},
                      sealed=("the teacher folder", "the --student folder"))
        check_folder(target, overwrite)
    check_hub_name(student, "--student")
    tracking = Tracking(config.report_to, target, "bertfit distill")  # a missing extra fails before any work
    prepared = prepare(data, data_config)
    if prepared.multi_label != teacher.multi_label:
        raise DataError(f"the data is {'multi' if prepared.multi_label else 'single'}-label but the teacher is "
                        f"{'multi' if teacher.multi_label else 'single'}-label; distil on data of the teacher's kind")
    unknown = sorted(set(prepared.labels.names) - set(teacher.labels.names))
    if unknown:
        raise DataError(f"the data has label(s) {unknown[:5]} the teacher does not know (teacher labels: "
                        f"{list(teacher.labels.names)[:10]}); distil on data labelled like the teacher's")
    prepared.labels = LabelSet(teacher.labels.names)  # the student answers in the teacher's label order

    log.info("teacher: scoring the training split once (its logits are the soft targets)")
    soft = teacher.model_logits(prepared.train["text"].tolist(), config.eval_batch_size, progress,
                          pairs=prepared.pairs("train"))
    if student is not None:
        model, tokenizer = load_base(student, teacher.labels.names, teacher.multi_label)
        described, kept = student, None
    else:
        model, kept = truncated_student(teacher, student_layers)
        tokenizer, described = teacher.tokenizer, f"teacher cut to {student_layers} layers"
    teacher_test = teacher.evaluate(prepared.test["text"].tolist(), prepared.test["label"].tolist(),
                                    config.eval_batch_size, pairs=prepared.pairs("test"))
    distilled = {"teacher": str(teacher_dir), "student": described, "kept_layers": kept,
                 "temperature": temperature, "alpha": alpha, "teacher_test": teacher_test}
    start = Start(model, tokenizer, described, trainer_class=DistillationTrainer,
                  trainer_settings={"temperature": temperature, "alpha": alpha}, teacher_logits=soft,
                  distilled=distilled)
    with tracking, claimed(target):  # its checkpoints beside --out: one run at a time
        return tracking.finished(fit(prepared, config, target, data_config=data_config, overwrite=overwrite,
                                     progress=progress, start=start, callbacks=tracking.callbacks()))
