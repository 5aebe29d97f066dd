"""The reference bench/serve.py measures `bertfit serve` against: the FastAPI endpoint a user would write first.

    python bench/plain_server.py MODEL_DIR --port 8001       # serves http://127.0.0.1:8001 until stopped

MODEL_DIR is a `bertfit export` folder. Its model.onnx runs on an onnxruntime session with default
options, its tokenizer.json through the `tokenizers` library (cut at the max length bertfit.json
names, so both servers do the same work per text; else the tokenizer's model_max_length), its labels
come from config.json. POST /predict {"texts": [...]} (and "pairs" for a sentence-pair model) answers
{"predictions": [{"label": ..., "probabilities": {label: p}}]} (multi-label: "labels", those over 0.5),
one request at a time per thread: the endpoint is a plain `def`, which FastAPI runs in its thread pool,
with no batching across requests. GET /health answers {"status": "ok"} (for the bench to wait on).
uvicorn, one worker, on 127.0.0.1 only; log level warning, as the bench runs `bertfit serve --quiet`.
This module is a benchmark reference, not part of bertfit: it validates nothing past the schema.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from tokenizers import Tokenizer

# No `from __future__ import annotations` here: FastAPI reads the endpoint's annotation to find the body's model.


class PredictRequest(BaseModel):
    texts: list[str]
    pairs: list[str] | None = None


def create_app(model_dir: Path) -> FastAPI:
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    input_names = [node.name for node in session.get_inputs()]
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    multi_label = config.get("problem_type") == "multi_label_classification"
    tokenizer_config = _read(model_dir / "tokenizer_config.json")
    max_length = _read(model_dir / "bertfit.json").get("max_length") or min(
        int(tokenizer_config.get("model_max_length") or 512), int(config.get("max_position_embeddings", 512)))
    pad = tokenizer_config.get("pad_token") or "[PAD]"
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad) or 0, pad_token=pad)

    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    def predict(request: PredictRequest):
        inputs = list(zip(request.texts, request.pairs, strict=True)) if request.pairs else request.texts
        encodings = tokenizer.encode_batch(inputs)
        feed = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                "token_type_ids": [e.type_ids for e in encodings]}
        logits = session.run(None, {name: np.array(feed[name], dtype=np.int64) for name in input_names})[0]
        if multi_label:
            probabilities = 1 / (1 + np.exp(-logits))
        else:
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities = exp / exp.sum(axis=1, keepdims=True)
        predictions = []
        for row in probabilities:
            answer = {"probabilities": dict(zip(labels, row.tolist(), strict=True))}
            if multi_label:
                answer["labels"] = [label for label, p in zip(labels, row, strict=True) if p >= 0.5]
            else:
                answer["label"] = labels[int(row.argmax())]
            predictions.append(answer)
        return {"predictions": predictions}

    return app


def _read(file: Path) -> dict:
    return json.loads(file.read_text(encoding="utf-8")) if file.exists() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="a bertfit export folder (model.onnx, tokenizer.json, config.json)")
    parser.add_argument("--port", type=int, default=8001, help="port on 127.0.0.1 (default 8001)")
    args = parser.parse_args(argv)
    if not (Path(args.model_dir) / "model.onnx").exists():
        print(f"error: {args.model_dir} has no model.onnx; export one with: bertfit export {args.model_dir}",
              file=sys.stderr)
        return 2
    uvicorn.run(create_app(Path(args.model_dir)), host="127.0.0.1", port=args.port, workers=1, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
