"""Sentence retrieval with pooled hidden states: Tatoeba (nearest neighbour) and BUCC (margin mining).

Embeddings
    ``embed`` runs the encoder without gradients over batches sorted by length and pools the
    hidden states of one layer: ``layer=0`` is the embedding output, ``layer=N`` the output of
    the N-th Transformer layer (``hidden_states[N]`` of Hugging Face; negative values count from
    the end, ``-1`` = last layer). ``pooling="mean"`` averages over the attention mask (special
    tokens included, as XTREME's default ``pool_mask = attention_mask`` does), ``"cls"`` takes the
    first token. Vectors are L2-normalised, so inner product = cosine.

Default layer
    XTREME's scripts pool the output of layer 14 of XLM-R Large's 24 (``--specific_layer 13``
    indexes ``hidden_states[-24:]``, i.e. skips the embedding output) and of layer 8 of mBERT's
    12 (``--specific_layer 7``). ``default_layer`` is the line through those two published
    settings, ``round(2 + depth / 2)``, clipped to ``depth``: 14 for 24 layers, 8 for 12, 5 for 6,
    2 for a 2-layer test model. Middle-upper layers of MLM encoders align languages best; models
    trained for embeddings (E5) do best near the top, so pass ``layer`` for them.

Tatoeba (XTREME's direction)
    XTREME's ``similarity_search(x, y)`` puts the non-English sentences ``x`` in a faiss index
    and searches it with the English sentences ``y``: for each English line the prediction is the
    0-based line index of the nearest non-English sentence (cosine). The prediction file thus
    has one line per English sentence; with LASER's aligned files the gold is line ``i`` -> ``i``.
    Exact ties (duplicated sentences) go to the lowest index, as ``argmax`` does. Nothing assumes
    1000 lines (jav has 205, swh 390).

BUCC (XTREME's ``mine_bitext`` + ``bucc_eval``)
    Identical sentences are embedded once (XTREME's "unify"); k=4 nearest neighbours in both
    directions (faiss, inner product); ratio margin
    ``score(x, y) = cos(x, y) / ((mean_k cos(x, NN_k(x)) + mean_k cos(y, NN_k(y))) / 2)``;
    the forward best of every source and the backward best of every target are pooled and
    taken greedily by score with each sentence used once ("max" strategy). A sentence text that
    carries several ids is dropped when mapping back to ids, as XTREME's ``read_sent2id`` does.
    The threshold that maximises F1 on dev (``bucc_optimal_threshold``) is applied to test:
    pairs with ``score >= threshold`` are written as ``src_id<TAB>tgt_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xstilts.data.batching import PREDICT_BATCH_SIZE, prediction_max_tokens, sorted_batches
from xstilts.data.readers import available, read_examples
from xstilts.errors import ConfigError, MissingDataError
from xstilts.evaluation.layout import write_predictions
from xstilts.evaluation.metrics.bucc import bucc_extract, bucc_f1, bucc_optimal_threshold
from xstilts.models.device import autocast_for, check_precision
from xstilts.models.loading import encoder_depth
from xstilts.tasks import Task, get_task
from xstilts.tasks.kinds import kind_ops

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls")
BUCC_NEIGHBOURS = 4


# ----------------------------------------------------------------------------- embeddings


def default_layer(depth: int) -> int:
    """The layer XTREME would pool for an encoder of ``depth`` layers (see the module docs)."""
    if depth < 1:
        raise ConfigError(f"an encoder needs at least one layer, got depth {depth}")
    return min(depth, int(np.floor(2 + depth / 2 + 0.5)))


def _depth(encoder) -> int:
    return encoder_depth(encoder)


def resolve_layer(encoder, layer: int | None) -> int:
    """``layer`` as an index into ``hidden_states`` (0..depth); None -> :func:`default_layer`."""
    depth = _depth(encoder)
    if layer is None:
        return default_layer(depth)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise ConfigError(f"layer must be an integer, got {layer!r}")
    index = int(layer) + depth + 1 if layer < 0 else int(layer)
    if not 0 <= index <= depth:
        raise ConfigError(
            f"layer {layer} is out of range for an encoder with {depth} layers "
            f"(0 = embedding output, {depth} = last layer, negative counts from the end)"
        )
    return index


def _max_length(tokenizer, encoder, requested: int) -> int:
    """``requested`` capped by what the model can take (XLM-R's positions stop at 512)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:
        limit = getattr(encoder.config, "max_position_embeddings", requested)
    return max(2, min(requested, int(limit)))


def embed_layers(
    encoder,
    tokenizer,
    sentences: Sequence[str],
    *,
    layers: Iterable[int],
    pooling: str = "mean",
    batch_size: int = PREDICT_BATCH_SIZE,
    max_tokens: int | None = None,
    precision: str = "auto",
    max_length: int = 128,
    prefix: str = "",
    progress: bool = True,
    description: str = "embedding",
) -> dict[int, np.ndarray]:
    """Pooled, L2-normalised float32 embeddings of several layers from one pass over the data:
    ``{layer: array [len(sentences), hidden]}`` (keys as given, e.g. ``-1`` stays ``-1``).

    Sentences are embedded longest first, dynamically padded, in batches of at most
    ``batch_size`` sentences and ``max_tokens`` padded tokens (None: the device's default,
    :func:`xstilts.data.batching.prediction_max_tokens`; 0: no token bound). ``precision``:
    autocast for the encoder (:func:`xstilts.evaluation.predict.autocast_for`; ``auto``: bf16 on
    GPUs, as training and prediction with a head; ``no``: float32). Pooling and normalisation
    run in float32 either way."""
    import torch


    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    check_precision(precision)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    wanted = {layer: resolve_layer(encoder, layer) for layer in layers}
    if not wanted:
        raise ConfigError("no layer requested")
    hidden = int(encoder.config.hidden_size)
    n = len(sentences)
    out = {layer: np.zeros((n, hidden), dtype=np.float32) for layer in wanted}
    if n == 0:
        return out

    max_len = _max_length(tokenizer, encoder, max_length)
    texts = [prefix + s for s in sentences]
    encoded = tokenizer(texts, truncation=True, max_length=max_len, padding=False)
    keys = [k for k in encoded.keys() if k in ("input_ids", "attention_mask", "token_type_ids")]
    lengths = np.array([len(ids) for ids in encoded["input_ids"]])
    device = next(encoder.parameters()).device
    bound = prediction_max_tokens(max_tokens, device.type)
    autocast = autocast_for(precision, device)
    # longest first, so padding stays small and a batch too large for memory fails at once
    batches = [np.asarray(b) for b in sorted_batches(lengths.tolist(), batch_size, max_tokens=bound)]
    deepest = max(wanted.values())
    was_training = encoder.training
    encoder.eval()
    iterator: Iterable[np.ndarray] = batches
    if progress:
        from rich.console import Console
        from rich.progress import track

        iterator = track(batches, description=description, console=Console(stderr=True), transient=True)
    try:
        with torch.no_grad():
            for batch_idx in iterator:
                features = [{k: encoded[k][i] for k in keys} for i in batch_idx]
                batch = tokenizer.pad(features, padding=True, return_tensors="pt")
                batch = {k: v.to(device) for k, v in batch.items()}
                with autocast:
                    outputs = encoder(**batch, output_hidden_states=True, return_dict=True)
                states = outputs.hidden_states
                if states is None or len(states) <= deepest:
                    raise ConfigError(f"{type(encoder).__name__} returned no hidden state for layer {deepest}")
                mask = batch["attention_mask"].unsqueeze(-1).float()
                for layer, index in wanted.items():
                    h = states[index].float()
                    if pooling == "mean":
                        pooled = (h * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                    else:
                        pooled = h[:, 0]
                    pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)
                    out[layer][batch_idx] = pooled.cpu().numpy()
    finally:
        if was_training:
            encoder.train()
    return out


def embed(
    encoder,
    tokenizer,
    sentences: Sequence[str],
    *,
    layer: int | None = None,
    pooling: str = "mean",
    batch_size: int = PREDICT_BATCH_SIZE,
    max_tokens: int | None = None,
    precision: str = "auto",
    max_length: int = 128,
    prefix: str = "",
    progress: bool = True,
) -> np.ndarray:
    """L2-normalised float32 sentence embeddings ``[len(sentences), hidden]`` from one layer
    (``None`` -> :func:`default_layer`); see the module docstring for the layer numbering."""
    chosen = resolve_layer(encoder, layer)
    return embed_layers(
        encoder, tokenizer, sentences, layers=[chosen], pooling=pooling, batch_size=batch_size,
        max_tokens=max_tokens, precision=precision, max_length=max_length, prefix=prefix, progress=progress,
    )[chosen]


# ----------------------------------------------------------------------------- search


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def knn(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k-NN with faiss (``IndexFlatIP``): ``(scores, indices)`` of shape
    ``[len(queries), min(k, len(database))]``, best first."""
    import faiss

    queries, database = _f32(queries), _f32(database)
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError(f"shapes {queries.shape} and {database.shape} do not match")
    k = min(k, database.shape[0])
    if k < 1 or queries.shape[0] == 0:
        return np.zeros((queries.shape[0], 0), np.float32), np.zeros((queries.shape[0], 0), np.int64)
    index = faiss.IndexFlatIP(database.shape[1])
    index.add(database)
    scores, indices = index.search(queries, k)
    return scores, indices


def nearest(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Index of the nearest database row (inner product) for each query, with exact ties going
    to the lowest index, as ``argmax`` does. (faiss alone returns the highest tied index; ties are
    real: a duplicated sentence has a bit-identical embedding.)"""
    n = len(database)
    k = min(n, 8)
    scores, indices = knn(queries, database, k)
    if k == 0:
        return np.zeros(len(queries), dtype=np.int64)
    tied = scores == scores[:, :1]
    best = np.where(tied, indices, np.iinfo(np.int64).max).min(axis=1)
    for row in np.flatnonzero(tied.all(axis=1)) if k < n else ():  # ties may reach past k
        s, i = knn(queries[row : row + 1], database, n)
        best[row] = i[0][s[0] == s[0, 0]].min()
    return best


def tatoeba_predictions(source_emb: np.ndarray, english_emb: np.ndarray) -> list[int]:
    """XTREME's direction: index the non-English sentences, search with each English sentence;
    returns, per English sentence, the 0-based index of its nearest non-English sentence."""
    return [int(i) for i in nearest(english_emb, source_emb)]


@dataclass
class MinedPair:
    score: float
    source: int  # index into the (unique) source sentences
    target: int


def margin_mine(x: np.ndarray, y: np.ndarray, k: int = BUCC_NEIGHBOURS) -> list[MinedPair]:
    """Ratio-margin mining, "max" strategy (XTREME's ``mine_bitext`` with ``retrieval='max'``,
    ``margin='ratio'``, threshold 0): every source's forward best and every target's backward
    best, taken greedily by score so that each sentence is used at most once. ``x``, ``y`` are
    L2-normalised."""
    x, y = _f32(x), _f32(y)
    if len(x) == 0 or len(y) == 0:
        return []
    fwd_sim, fwd_ind = knn(x, y, k)
    bwd_sim, bwd_ind = knn(y, x, k)
    fwd_mean, bwd_mean = fwd_sim.mean(axis=1), bwd_sim.mean(axis=1)

    def scores(a, b, cand, a_mean, b_mean):
        cos = np.einsum("id,ijd->ij", a, b[cand])
        return cos / ((a_mean[:, None] + b_mean[cand]) / 2)

    fwd_scores = scores(x, y, fwd_ind, fwd_mean, bwd_mean)
    bwd_scores = scores(y, x, bwd_ind, bwd_mean, fwd_mean)
    fwd_best = fwd_ind[np.arange(len(x)), fwd_scores.argmax(axis=1)]
    bwd_best = bwd_ind[np.arange(len(y)), bwd_scores.argmax(axis=1)]
    src = np.concatenate([np.arange(len(x)), bwd_best])
    tgt = np.concatenate([fwd_best, np.arange(len(y))])
    all_scores = np.concatenate([fwd_scores.max(axis=1), bwd_scores.max(axis=1)])
    seen_src: set[int] = set()
    seen_tgt: set[int] = set()
    mined: list[MinedPair] = []
    for i in np.argsort(-all_scores, kind="stable"):
        s, t = int(src[i]), int(tgt[i])
        if s in seen_src or t in seen_tgt:
            continue
        seen_src.add(s)
        seen_tgt.add(t)
        if all_scores[i] > 0:
            mined.append(MinedPair(float(all_scores[i]), s, t))
    return mined


def _unify(sentences: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Unique texts in first-seen order, and text -> id for texts carried by exactly one id."""
    unique: list[str] = []
    owner: dict[str, str] = {}
    repeated: set[str] = set()
    for sid, text in sentences.items():
        if text in owner or text in repeated:
            if text in owner:
                repeated.add(text)
                del owner[text]
            continue
        unique.append(text)
        owner[text] = sid
    return unique, owner


def bucc_candidates(
    source: dict[str, str], target: dict[str, str], embed_fn, k: int = BUCC_NEIGHBOURS
) -> dict[tuple[str, str], float]:
    """Mined ``{(source id, target id): margin score}`` for one BUCC split; ``embed_fn`` maps a
    list of sentences to L2-normalised embeddings."""
    src_texts, src_owner = _unify(source)
    tgt_texts, tgt_owner = _unify(target)
    x = embed_fn(src_texts)
    y = embed_fn(tgt_texts)
    candidates: dict[tuple[str, str], float] = {}
    for pair in margin_mine(x, y, k):
        s_text, t_text = src_texts[pair.source], tgt_texts[pair.target]
        if s_text in src_owner and t_text in tgt_owner:
            key = (src_owner[s_text], tgt_owner[t_text])
            candidates[key] = max(pair.score, candidates.get(key, pair.score))
    return candidates


@dataclass
class BuccResult:
    """One BUCC language: the tuned threshold, the dev F1 at it, and the test pairs written."""

    threshold: float
    dev_f1: float
    pairs: list[tuple[str, str]]


# ----------------------------------------------------------------------------- prediction


def _bitext(task, data_dir, split: str, lang: str):
    examples = read_examples(task, data_dir, split, lang)
    if len(examples) != 1:
        raise MissingDataError(f"expected one bitext for {split}/{lang}, found {len(examples)}")
    return examples[0]


def mining_mode(task: Task) -> str:
    """``margin`` (BUCC: pairs mined over whole corpora) or ``nearest`` (Tatoeba: each source
    sentence's nearest target), as the task declares (``extra["mining"]``)."""
    return str((task.extra or {}).get("mining", "nearest"))


def predict_retrieval(
    task,
    encoder,
    tokenizer,
    data_dir: str | Path,
    languages: Sequence[str] | None,
    out_dir: str | Path,
    *,
    layer: int | None = None,
    pooling: str = "mean",
    batch_size: int = PREDICT_BATCH_SIZE,
    max_tokens: int | None = None,
    precision: str = "auto",
    max_length: int = 512,
    prefix: str = "",
    progress: bool = True,
) -> dict[str, Path]:
    """Write Tatoeba or BUCC predictions for ``languages`` (None: every language with data)
    into ``out_dir/{task}/test-{lang}.tsv``; returns ``{lang: path}``.

    ``prefix`` is prepended to every sentence (e.g. ``"query: "`` for E5; default none, so
    that any encoder is treated alike). ``max_length`` is capped by the model (XTREME uses 512).
    """

    t = get_task(task)
    if not kind_ops(t).encoder_only:
        raise ConfigError(f"{t.name} is not a retrieval task")
    mode = mining_mode(t)
    chosen = resolve_layer(encoder, layer)
    present = available(t, data_dir).get("test", [])
    if languages is None:
        languages = list(present)
        if not languages:
            raise MissingDataError(f"no {t.name} test data below {data_dir}")

    def embed_fn(sentences: Sequence[str]) -> np.ndarray:
        return embed(
            encoder, tokenizer, sentences, layer=chosen, pooling=pooling, batch_size=batch_size,
            max_tokens=max_tokens, precision=precision, max_length=max_length, prefix=prefix,
            progress=progress,
        )

    written: dict[str, Path] = {}
    for lang in languages:
        if mode == "nearest":
            bitext = _bitext(t, data_dir, "test", lang)
            src_emb = embed_fn(list(bitext.source.values()))
            eng_emb = embed_fn(list(bitext.target.values()))
            predictions = tatoeba_predictions(src_emb, eng_emb)
            written[lang] = write_predictions(out_dir, t, lang, predictions)
        else:
            result = predict_bucc_language(t, data_dir, lang, embed_fn)
            logger.info("bucc %s: threshold %.4f (dev F1 %.2f), %d test pairs", lang, result.threshold, result.dev_f1, len(result.pairs))
            written[lang] = write_predictions(out_dir, t, lang, result.pairs)
    return written


def predict_bucc_language(task, data_dir: str | Path, lang: str, embed_fn, k: int = BUCC_NEIGHBOURS) -> BuccResult:
    """Mine dev and test, tune the threshold on dev's gold, apply it to test."""

    dev = _bitext(task, data_dir, "dev", lang)
    if not dev.gold:
        raise MissingDataError(f"BUCC dev gold for {lang} not found below {data_dir}: the threshold is tuned on it")
    dev_candidates = bucc_candidates(dev.source, dev.target, embed_fn, k)
    threshold = bucc_optimal_threshold(dev_candidates, dev.gold)
    dev_f1 = bucc_f1(dev.gold, bucc_extract(dev_candidates, threshold))["f1"]
    test = _bitext(task, data_dir, "test", lang)
    test_candidates = bucc_candidates(test.source, test.target, embed_fn, k)
    return BuccResult(threshold, dev_f1, bucc_extract(test_candidates, threshold))
