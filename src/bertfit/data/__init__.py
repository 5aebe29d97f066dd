"""Labelled data in: files and data sets read, columns found, rows cleaned, split by class, leaks refused.

- ``sources``: CSV / TSV / JSONL / Parquet files, folders of splits, ``hf:`` data sets.
- ``cleaning``: columns found, rows cleaned and counted, the split, the leak check; texts streamed to predict.
- ``splits``: the stratified split and the check that no text sits in two splits.

Builds on the core (config, errors, labels, hub); knows nothing of models or training.
"""

from bertfit.data.cleaning import PreparedData, prepare
from bertfit.data.reading import iter_texts, load_labelled

__all__ = ["PreparedData", "iter_texts", "load_labelled", "prepare"]
