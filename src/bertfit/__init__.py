"""bertfit: from a file of labelled texts to a fine-tuned, honestly evaluated BERT classifier.

    from bertfit import train, TextClassifier
    result = train("tickets.csv", out="my-model", epochs=5)
    clf = TextClassifier.from_pretrained("my-model")
    clf.predict(["printer is out of toner"])

Heavy libraries (torch, transformers) load when first used, not on import.
"""

__version__ = "0.1.0"

from bertfit.config import DataConfig, TrainConfig  # noqa: E402
from bertfit.errors import BertfitError, DataError, ModelLoadError, OutputError, UsageError  # noqa: E402


def __getattr__(name: str):
    # Lazy: `import bertfit` stays fast; the model and training code pull in torch.
    if name == "TextClassifier":
        from bertfit.model import TextClassifier

        return TextClassifier
    if name in ("train", "TrainResult"):
        from bertfit.training import run as training

        return getattr(training, name)
    if name in ("predict_dataset", "predict_files"):  # Ray (the ray extra)
        from bertfit.batch import ray_engine

        return getattr(ray_engine, name)
    if name == "prepare":
        from bertfit.data.cleaning import prepare

        return prepare
    raise AttributeError(f"module 'bertfit' has no attribute {name!r}")


__all__ = ["BertfitError", "DataConfig", "DataError", "ModelLoadError", "OutputError", "TextClassifier",
           "TrainConfig", "UsageError", "predict_dataset", "predict_files", "prepare", "train"]
