"""Which trial runs and which wins: a trial's expected seconds, and the model the study keeps."""

from __future__ import annotations

import math
from typing import Any


def expected_seconds(study: Any, chosen: dict[str, Any]) -> float | None:
    """A trial's seconds, from the finished trials' seconds per epoch: those that trained the same layers
    at the same batch size and maximum length, else the same layers (the quickest of them, so that the
    estimate errs low); None where no finished trial trained those layers (then the trial runs)."""
    finished = [t for t in study.get_trials(deepcopy=False) if "epoch_seconds" in t.user_attrs]
    alike = [t.user_attrs["epoch_seconds"] for t in finished
             if all(t.params.get(key) == chosen.get(key) for key in ("train_layers", "batch_size", "max_length"))]
    alike = alike or [t.user_attrs["epoch_seconds"] for t in finished
                      if t.params.get("train_layers") == chosen["train_layers"]]
    return min(alike) * chosen["epochs"] if alike else None


def winner(top: Any, default: Any, validation_rows: int) -> tuple[Any, float | None]:
    """The trial whose model is kept, and the margin it had to clear: the trial best on validation, unless
    the default recipe's trial scored within one standard error of it.

    The best of many trials on one validation split is the luckiest as well as the best: its lead over
    the default is partly that split's noise, which the test split does not share. A searched trial
    therefore wins only by more than the standard error of the default's score on these rows
    (sqrt(p(1 - p) / n), binomial; for micro F1 an approximation over rows).
    """
    if top is None or default is None or top.number == default.number:
        return top, None
    score = default.user_attrs.get("validation")
    if score is None or not 0 <= score <= 1 or validation_rows < 1:
        return top, None
    margin = math.sqrt(score * (1 - score) / validation_rows)
    return (top if top.value - default.value > margin else default), margin
