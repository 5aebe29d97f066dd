"""Fine-tuning: from prepared splits to a saved, scored model folder.

- ``run``: ``train`` and ``fit``, the run from start to saved folder, stage by stage.
- ``trainer``: bertfit's ``transformers.Trainer``: rows, batch order, loss, optimizer groups.
- ``backbone``: the base checkpoint with a fresh head; what trains (``--train-layers``, LoRA).
- ``cached``: encode once: a frozen bottom's outputs kept, the top trained on them.
- ``epochs``: per-epoch logs and history, the epochs planned, the epoch kept, the notes.
- ``checkpoints``: per-epoch checkpoints beside the output, and ``--resume``.
- ``baseline``: TF-IDF + logistic regression on the same splits.
- ``distill``: a student trained on a teacher's logits (a trainer subclass).

Builds on the core and ``data``; writes its report through ``reporting``.
"""

from bertfit.training.run import TrainResult, train

__all__ = ["TrainResult", "train"]
