"""How much of each shared data set the embedded model's vocabulary cannot read.

For every data set, the share of its training split's tokens (special tokens aside, texts and pairs
as training tokenizes them, at the default 256 tokens) that are the tokenizer's unknown token, and
whether training would warn of unreadable text (`bertfit.encoding.UNREADABLE_SHARE`). Usage:

    python bench/vocabulary.py [--datasets trec,goemotions]
"""

from __future__ import annotations

import argparse
import sys

from accuracy import DATASETS, load
from timing import SHARED, measured_on, quiet, shared_missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default: all)")
    args = parser.parse_args()
    if shared_missing():
        return 0
    quiet()
    from transformers import AutoTokenizer

    from bertfit.encoding import UNREADABLE_SHARE, unknown_tokens_note
    from bertfit.training.backbone import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    print(f"{measured_on()}; data: {SHARED}")
    print("| data set | training rows | tokens | unknown share | training warns |")
    print("| --- | --- | --- | --- | --- |")
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    for name in args.datasets.split(","):
        train = load(name, 42, None).train
        pairs = train["text_pair"].tolist() if "text_pair" in train else None
        ids = tokenizer(train["text"].tolist(), pairs, truncation=True, max_length=256)["input_ids"]
        tokens = [i for row in ids for i in row if i not in special]
        share = sum(i == tokenizer.unk_token_id for i in tokens) / max(len(tokens), 1)
        warns = unknown_tokens_note(tokenizer, ids) is not None
        print(f"| {name} | {len(train):,} | {len(tokens):,} | {share:.2%} | {'yes' if warns else 'no'} "
              f"(at {UNREADABLE_SHARE:.0%}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
