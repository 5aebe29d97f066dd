"""Out-of-fold probabilities from fine-tuned models: the audit's strongest evidence, and its slowest.

Where a linear model on sentence embeddings or TF-IDF cannot tell a class well (question types in
trec: the embeddings say what a question is about, not what it asks for), its mistakes on rows
labelled right are flagged beside the real errors. A fine-tuned model makes far fewer. Each of
the K folds is scored by a model trained on the others: the top ``LAYERS`` encoder layers, pooler
and head, on the encode-once path (the frozen bottom runs once per text), for ``EPOCHS`` epochs,
a tenth of its own rows choosing the epoch; the test rows by one trained on every labelled row.
So K + 1 short trainings: bench/audit.py measures the cost beside one default training run.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

import numpy as np
import pandas as pd

from bertfit.auditing.evidence import fold_splitter
from bertfit.config import TrainConfig
from bertfit.data.cleaning import PreparedData

log = logging.getLogger(__name__)

LAYERS = 2  # top encoder layers trained per fold
EPOCHS = 3
CHOOSING_SHARE = 0.1  # of a fold's fitting rows, held back to choose its epoch


def finetuned_out_of_fold(prepared: PreparedData, labelled: pd.DataFrame, labels: np.ndarray, folds: int,
                          seed: int, model_path: str, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (rows, classes) for every labelled row from the fold that left it out, and for the test rows
    from a model trained on all labelled rows; class ids as in ``prepared.labels``."""
    splitter = fold_splitter(labels, len(prepared.labels), folds, seed)
    scored = np.zeros((len(labels), len(prepared.labels)))
    parts = list(splitter.split(np.zeros(len(labels)), labels))
    for number, (fit_rows, held_out) in enumerate(parts, 1):
        log.info("audit: fine-tuning fold %d of %d (%d rows)", number, len(parts), len(fit_rows))
        scored[held_out] = _train_and_score(prepared, labelled.iloc[fit_rows], labelled.iloc[held_out], seed,
                                            model_path, progress)
    log.info("audit: fine-tuning on every labelled row for the test split")
    test = _train_and_score(prepared, labelled, prepared.test, seed, model_path, progress)
    return scored, test


def _train_and_score(prepared: PreparedData, rows: pd.DataFrame, scored: pd.DataFrame, seed: int, model_path: str,
                     progress: bool) -> np.ndarray:
    from bertfit.training.run import fit_model

    shuffled = rows.sample(frac=1.0, random_state=seed)
    choosing = max(1, int(round(CHOOSING_SHARE * len(shuffled))))
    split = PreparedData(train=shuffled.iloc[choosing:].reset_index(drop=True),
                         validation=shuffled.iloc[:choosing].reset_index(drop=True),
                         test=scored.reset_index(drop=True), labels=prepared.labels, text_col=prepared.text_col,
                         label_col=prepared.label_col, text_pair_col=prepared.text_pair_col)
    config = TrainConfig(model=model_path, train_layers=str(LAYERS), epochs=EPOCHS, baseline=False, report=False,
                         seed=seed)
    fitted = fit_model(split, config, None, progress=False)
    shutil.rmtree(fitted.checkpoints, ignore_errors=True)
    pairs: dict[str, Any] = {"pairs": split.pairs("test")} if prepared.text_pair_col else {}
    return fitted.classifier.predict_proba(split.test["text"].tolist(), progress=progress, **pairs)
