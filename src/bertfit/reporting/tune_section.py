"""The tuning study as a section of the report (``bertfit tune``): trials over time, importances, the trials."""

from __future__ import annotations

from typing import Any

from bertfit.reporting.html import facts, part, section, table
from bertfit.reporting.plots import plot_trials


def study_section(study: dict[str, Any]) -> str:
    trials = study.get("trials", [])
    parts = [
        facts([("trials complete / pruned or stopped / failed",
                f"{study.get('trials_complete')} / {study.get('trials_pruned')} / {study.get('trials_failed')}"),
               ("winner (its model saved)", study.get("best_trial")),
               ("its validation score", study.get("best_validation")),
               ("the default recipe's validation score (trial 0)", study.get("default_validation")),
               ("trial best on validation; the lead over the default a searched trial must exceed to win",
                f"{study.get('top_trial')}; {study.get('margin')} (one standard error of the default's score)"),
               ("search seconds (budget)", f"{study.get('seconds')} ({study.get('budget_seconds')})"),
               ("sampler, pruner", f"{study.get('sampler')}, {study.get('pruner')}"),
               ("storage, study", f"{study.get('storage')}, {study.get('study_name')}")]),
        "<p>Every trial trained on train and was judged on validation only; the test split was scored "
        "once, for the winner, as trained in its trial.</p>",
        part("trials-plot", "Trials over time", plot_trials(trials, study.get("default_validation"))),
        part("importances", "Parameter importances (Optuna's fANOVA, share of the score's variance)",
             table(["parameter", "importance"], list((study.get("importances") or {}).items()))
             if study.get("importances") else "<p>Too few finished trials to tell.</p>"),
        part("trials", "Trials", _trials(trials)),
    ]
    return section("study", "Tuning study", "".join(parts))


def _trials(trials: list[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(name for t in trials for name in (t.get("params") or {})))
    rows = [[t["number"], t["state"] + (f" ({t['stopped']})" if t.get("stopped") else "") +
             (" (default recipe)" if t.get("recipe") == "default" else ""), t.get("validation"), t.get("epoch"),
             t.get("seconds"), *((t.get("params") or {}).get(name) for name in names)] for t in trials]
    return table(["trial", "state", "validation", "epoch kept", "seconds", *names], rows)
