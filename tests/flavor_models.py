"""Tiny models of the flavors users serve, built here from scratch: no model hub is reachable.

A BERT-like text classifier and encoder and a GPT-2-like causal LM with random (seeded) weights, a
WordPiece / byte-level BPE tokenizer trained on a few sentences, a sentence-transformers model made
of that encoder plus mean pooling, and XGBoost / LightGBM models fit on a small seeded frame. Each
`register_*` logs one with its MLflow flavor and a signature and registers it; the models are small
enough that building all of them takes seconds. Shared by the flavor tests and
benchmarks/flavors_bench.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Hugging Face libraries look up the hub for model cards and commit hashes: fail those fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SENTENCES = [
    "the film was wonderful and moving",
    "a dull and tedious movie",
    "great acting and a great story",
    "bad plot and worse dialogue",
    "i loved every minute of it",
    "i hated the ending",
    "a moving story told with care",
    "tedious, slow and far too long",
]
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
TABULAR_COLUMNS = ["f0", "f1", "f2", "f3"]
HIDDEN = 32
TEXT_REQS = ["transformers", "torch", "tokenizers"]


def wordpiece_tokenizer() -> Any:
    """A BERT-style tokenizer ([CLS] … [SEP], lower-cased WordPiece) trained on SENTENCES."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(SENTENCES, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
    tok.post_processor = processors.BertProcessing(
        ("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]"))
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def bpe_tokenizer() -> Any:
    """A GPT-2-style byte-level BPE tokenizer trained on SENTENCES."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES, trainer)
    eos = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=eos, eos_token=eos, pad_token=eos, model_max_length=64
    )


def bert_config(tokenizer: Any, hidden: int = HIDDEN, layers: int = 2, **extra: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(2, hidden // 64),
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        **extra,
    )


def classifier_pipeline(train_steps: int = 0, hidden: int = HIDDEN, layers: int = 2) -> Any:
    """A BERT-like sentiment classifier (2 layers, 32 wide unless told); `train_steps` > 0 fits it a
    little on SENTENCES. The GPU benchmark asks for a DistilBERT-sized one (6 x 768)."""
    import torch
    import transformers

    transformers.set_seed(0)
    tokenizer = wordpiece_tokenizer()
    labels = {"num_labels": 2, "id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    config = bert_config(tokenizer, hidden, layers, **labels)
    model = transformers.BertForSequenceClassification(config)
    if train_steps:
        labels = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
        batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model.train()
        for _ in range(train_steps):
            optimizer.zero_grad()
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
    model.eval()
    return transformers.pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")


def encoder(tokenizer: Any) -> Any:
    import transformers

    transformers.set_seed(0)
    return transformers.BertModel(bert_config(tokenizer)).eval()


def feature_extraction_pipeline() -> Any:
    import transformers

    tokenizer = wordpiece_tokenizer()
    return transformers.pipeline(
        "feature-extraction", model=encoder(tokenizer), tokenizer=tokenizer, device="cpu"
    )


def generation_pipeline() -> Any:
    """A 2-layer GPT-2-like causal LM; greedy decoding, so its output is deterministic."""
    import transformers

    transformers.set_seed(0)
    tokenizer = bpe_tokenizer()
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=HIDDEN,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    model.generation_config.do_sample = False
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return transformers.pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")


def sentence_transformer(workdir: Path) -> Any:
    """The tiny encoder saved to `workdir` and wrapped as Transformer + mean Pooling."""
    from sentence_transformers import SentenceTransformer, models

    tokenizer = wordpiece_tokenizer()
    path = workdir / "tiny-encoder"
    encoder(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    word = models.Transformer(str(path), max_seq_length=64)
    return SentenceTransformer(modules=[word, models.Pooling(HIDDEN, pooling_mode="mean")], device="cpu")


def tabular_frame(rows: int = 200) -> tuple[Any, Any]:
    """A seeded numeric frame and a binary label that depends on it."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(rows, len(TABULAR_COLUMNS))), columns=TABULAR_COLUMNS)
    y = ((X["f0"] + 0.5 * X["f1"] - X["f2"] * X["f3"]) > 0).astype(int)
    return X, y


# -- registering ------------------------------------------------------------------------------------


def register_transformers(
    pipe: Any,
    name: str,
    example: Any,
    params: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    experiment_id: str | None = None,
) -> None:
    """`model_config` is passed to every pipeline call (e.g. ``batch_size``: padded forward passes)."""
    import mlflow
    from mlflow.models import infer_signature

    output = mlflow.transformers.generate_signature_output(pipe, example, params=params)
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.transformers.log_model(
            pipe,
            name="model",
            signature=infer_signature(example, output, params=params),
            registered_model_name=name,
            pip_requirements=TEXT_REQS,
            model_config=model_config,
        )


def register_sentence_transformer(model: Any, name: str, experiment_id: str | None = None) -> None:
    import mlflow

    example = SENTENCES[:2]
    reqs = [*TEXT_REQS, "sentence-transformers"]
    log(mlflow.sentence_transformers, model, name, example, model.encode(example), reqs, experiment_id)


def register_xgboost(name: str, native: bool, experiment_id: str | None = None) -> None:
    """XGBoost's sklearn API (XGBClassifier) or, with `native`, a Booster from xgb.train."""
    import mlflow
    import xgboost as xgb

    X, y = tabular_frame()
    params = {"max_depth": 3, "seed": 0, "nthread": 1}
    if native:
        model: Any = xgb.train({**params, "objective": "binary:logistic"}, xgb.DMatrix(X, y), 10)
        out = model.predict(xgb.DMatrix(X))
    else:
        model = xgb.XGBClassifier(n_estimators=10, **params).fit(X, y)
        out = model.predict(X)
    log(mlflow.xgboost, model, name, X, out, ["xgboost", "pandas"], experiment_id)


def register_lightgbm(name: str, native: bool, experiment_id: str | None = None) -> None:
    """LightGBM's sklearn API (LGBMClassifier) or, with `native`, a Booster from lgb.train."""
    import lightgbm as lgb
    import mlflow

    X, y = tabular_frame()
    params = {"num_leaves": 7, "seed": 0, "num_threads": 1, "verbose": -1}
    if native:
        model: Any = lgb.train({**params, "objective": "binary"}, lgb.Dataset(X, y), 10)
    else:
        model = lgb.LGBMClassifier(n_estimators=10, **params).fit(X, y)
    log(mlflow.lightgbm, model, name, X, model.predict(X), ["lightgbm", "pandas"], experiment_id)


def log(
    flavor: Any, model: Any, name: str, example: Any, output: Any, reqs: list[str], experiment_id: str | None
) -> None:
    """Log `model` with `flavor` and a signature inferred from (example, output); register it as `name`."""
    import mlflow
    from mlflow.models import infer_signature

    with mlflow.start_run(experiment_id=experiment_id):
        flavor.log_model(
            model,
            name="model",
            signature=infer_signature(example, output),
            registered_model_name=name,
            pip_requirements=reqs,
        )


GENERATION_PARAMS = {"max_new_tokens": 8}


def register_all(workdir: Path, experiment_id: str) -> None:
    """Every flavor fixture, as version 1 of its own registered model, in the current registry; runs
    go to `experiment_id` (passed, not set as the active experiment, which other tests rely on)."""
    exp = {"experiment_id": experiment_id}
    register_transformers(classifier_pipeline(), "hf-classifier", SENTENCES[:2], **exp)
    register_transformers(feature_extraction_pipeline(), "hf-features", SENTENCES[:2], **exp)
    register_transformers(generation_pipeline(), "hf-generator", SENTENCES[:2], GENERATION_PARAMS, **exp)
    register_sentence_transformer(sentence_transformer(workdir), "st-embedder", **exp)
    for native in (False, True):
        suffix = "-booster" if native else ""
        register_xgboost(f"xgb{suffix}", native, **exp)
        register_lightgbm(f"lgbm{suffix}", native, **exp)
