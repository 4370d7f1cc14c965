"""Registers the code formulations (generate, contrastive, match, infill) with
:mod:`xstilts.train.formulations`; the models and features live in :mod:`xstilts.models.codegen`.

Settings read from ``FormulationInput.settings`` (all optional; a run config sets them per task
under ``options:``, checked against :data:`xstilts.train.formulations.FORMULATION_OPTIONS`, except
``max_length``, which is the phase's hyperparameter): ``max_length`` (source / pair
length, default 128 for generate and contrastive, 256 for match and infill),
``max_target_length`` (128), ``decoder_layers`` (6, of the encoder's width; 2 learns in fewer
CPU seconds, as configs/demo.yaml uses), ``decoder_heads`` (the encoder's),
``decoder_dropout`` (0.1), ``decoder_lr_scale`` (20: the fresh decoder trains at 20x the phase's
learning rate, i.e. 2e-4 at phase 1's default 1e-5, at which it would barely move),
``decoder_embeddings`` ("copy": the decoder's own table initialised from the encoder's rows, at
the decoder's rate; "tied": the encoder's rows), ``copy_attention`` (True: pointer-generator
mixture over source tokens), ``freeze_embeddings`` (False; True: the encoder's word embeddings
do not train in phase 1, which saves ~40% of a CPU step, but then a code task trains less of the
encoder than an NLU task does, and in a mixture it freezes them for every task, as they share the
encoder), ``num_beams`` (1, for dev evaluation),
``eval_limit`` (at most this many dev examples are decoded per evaluation; default the run's
``eval_max_examples``, else 500), ``temperature`` (0.05),
``negatives`` (1), ``mask_probability`` (0.15), ``encoder_source`` (the encoder's folder, for the
LM-head weights of ``infill``).

Each part's ``evaluate`` (set when dev examples are given) scores the intermediate task itself;
the pipeline reports it after phase 1, and it also fits ``train(eval_fn=...)``. It returns the
dev ``loss`` plus: EM, BLEU, smoothed BLEU-4 and CodeBLEU (``generate``), MRR (``contrastive``),
accuracy (``match``); ``infill`` masks the dev set with a fixed seed inside a forked RNG, so its
loss neither varies between calls nor disturbs training randomness. ``info["metric_for_best"]``
names the metric to select on; ``info`` holds only JSON values (it is written to the run).
"""

from __future__ import annotations

from xstilts.evaluation.code_quality import evaluate_generation, evaluate_retrieval
from xstilts.models.codegen import (
    CodeContrastive,
    CodeGenerator,
    CodeInfill,
    ContrastiveCollator,
    GenerationCollator,
    GenerationFeaturizer,
    InfillCollator,
    MatchCollator,
    WhitespaceCodec,
    build_match_model,
    build_shortlist,
    contrastive_features,
    count_parameters,
    infill_features,
    match_features,
    mean_loss,
)
from xstilts.models.loading import position_offset
from xstilts.train.formulations import FormulationInput, TrainablePart, register_formulation

DECODER_LR_SCALE = 20.0
DECODER_LAYERS = 6


def _length(inp: FormulationInput, default: int) -> int:
    """``settings["max_length"]`` (or ``default``), never beyond what the encoder can embed."""
    want = int(inp.settings.get("max_length") or default)
    limits = [int(inp.tokenizer.model_max_length)] if inp.tokenizer.model_max_length < 1_000_000 else []
    positions = getattr(inp.encoder.config, "max_position_embeddings", None)
    if positions:
        limits.append(int(positions) - position_offset(inp.encoder.config))
    return min([want, *limits])


def _language(inp: FormulationInput) -> str | None:
    lang = inp.task.extra.get("code_language")
    if lang is None and inp.train_examples:
        lang = getattr(inp.train_examples[0], "language", None)
    return str(lang) if lang else None


def build_generate(inp: FormulationInput) -> TrainablePart:
    s = inp.settings
    codec = WhitespaceCodec.for_tokenizer(inp.tokenizer)
    featurizer = GenerationFeaturizer(
        inp.tokenizer, codec, max_source_length=_length(inp, 128),
        max_target_length=int(s.get("max_target_length") or 128),
    )  # fmt: skip
    shortlist = build_shortlist(inp.tokenizer, featurizer.target_ids([ex.target for ex in inp.train_examples]))
    lr_scale = s.get("decoder_lr_scale") or DECODER_LR_SCALE
    model = CodeGenerator(
        inp.encoder, shortlist, num_layers=int(s.get("decoder_layers", DECODER_LAYERS)),
        num_heads=s.get("decoder_heads"), dropout=float(s.get("decoder_dropout", 0.1)),
        max_target_length=featurizer.max_target_length, decoder_lr_scale=float(lr_scale),
        embeddings=str(s.get("decoder_embeddings", "copy")), copy_attention=bool(s.get("copy_attention", True)),
    )  # fmt: skip
    frozen = bool(s.get("freeze_embeddings", False))
    if frozen:
        # The encoder's word embeddings (XLM-R's 250k rows: most of a small encoder's weights)
        # otherwise take a dense gradient and an AdamW update every step, ~40% of a CPU step,
        # while only the few thousand rows of English and code tokens move at all.
        inp.encoder.get_input_embeddings().weight.requires_grad_(False)
    train_features = featurizer.features(inp.train_examples, shortlist)
    dev_features = featurizer.features(inp.dev_examples, shortlist) if inp.dev_examples else None
    info = {
        "formulation": "generate", "whitespace_codec": codec.enabled, "shortlist_size": len(shortlist),
        "decoder_parameters": count_parameters(model.decoder), "decoder_lr_scale": model.decoder.lr_scale,
        "decoder_layers": len(model.decoder.layers), "decoder_embeddings": model.decoder_config["embeddings"],
        "encoder_embeddings_frozen": frozen, "copy_attention": model.copy_key is not None,
    }  # fmt: skip
    evaluate = None
    if inp.dev_examples:
        limit = int(s.get("eval_limit") or inp.eval_max_examples or 500)
        dev = list(inp.dev_examples)[:limit]
        beams = int(s.get("num_beams", 1))
        language = _language(inp)
        collate = GenerationCollator(inp.tokenizer.pad_token_id)

        def eval_fn(m) -> dict[str, float]:
            scores = {"loss": mean_loss(m, dev_features, collate)}
            scores.update(evaluate_generation(m, featurizer, dev, language=language, num_beams=beams))
            return scores

        evaluate = eval_fn
        info["metric_for_best"] = "bleu"
    return TrainablePart(
        name=inp.task.name, model=model, train_features=train_features,
        collate=GenerationCollator(inp.tokenizer.pad_token_id), dev_features=dev_features, info=info,
        evaluate=evaluate,
    )  # fmt: skip


def build_contrastive(inp: FormulationInput) -> TrainablePart:
    s = inp.settings
    codec = WhitespaceCodec.for_tokenizer(inp.tokenizer)
    max_length = _length(inp, 128)
    model = CodeContrastive(inp.encoder, temperature=float(s.get("temperature", 0.05)))
    train = contrastive_features(inp.train_examples, inp.tokenizer, codec, max_length)
    dev = contrastive_features(inp.dev_examples, inp.tokenizer, codec, max_length) if inp.dev_examples else None
    info = {"formulation": "contrastive", "whitespace_codec": codec.enabled, "temperature": model.temperature}
    evaluate = None
    if inp.dev_examples:
        examples = list(inp.dev_examples)[: int(s.get("eval_limit", 1000))]
        collate = ContrastiveCollator(inp.tokenizer.pad_token_id)

        def eval_fn(m) -> dict[str, float]:
            # In-batch loss over dev batches of 32 (the loss depends on the batch size).
            scores = {"loss": mean_loss(m, dev, collate)}
            scores.update(evaluate_retrieval(m, inp.tokenizer, codec, examples, max_length=max_length))
            return scores

        evaluate = eval_fn
        info["metric_for_best"] = "mrr"
    return TrainablePart(inp.task.name, model, train, ContrastiveCollator(inp.tokenizer.pad_token_id), dev, info,
                         evaluate=evaluate)


def build_match(inp: FormulationInput) -> TrainablePart:
    s = inp.settings
    codec = WhitespaceCodec.for_tokenizer(inp.tokenizer)
    kwargs = {"negatives": int(s.get("negatives", 1)), "max_length": _length(inp, 256)}
    train = match_features(inp.train_examples, inp.tokenizer, codec, seed=inp.seed, **kwargs)
    dev = None
    if inp.dev_examples and len(inp.dev_examples) > 1:
        dev = match_features(inp.dev_examples, inp.tokenizer, codec, seed=inp.seed + 1, **kwargs)
    model = build_match_model(inp.encoder)
    collate = MatchCollator(inp.tokenizer.pad_token_id)
    info = {"formulation": "match", "whitespace_codec": codec.enabled, "negatives": kwargs["negatives"]}
    evaluate = None
    if dev:
        evaluate = lambda m: _match_eval(m, dev, collate)  # noqa: E731
        info["metric_for_best"] = "accuracy"
    return TrainablePart(inp.task.name, model, train, collate, dev, info, evaluate=evaluate)


def _match_eval(model, features, collate, batch_size: int = 32) -> dict[str, float]:
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct, count = 0.0, 0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(features), batch_size):
                chunk = features[start : start + batch_size]
                batch = {k: v.to(device) for k, v in collate(chunk).items()}
                out = model(**batch)
                loss_sum += float(out.loss) * len(chunk)
                correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
                count += len(chunk)
    finally:
        model.train(was_training)
    return {"loss": loss_sum / count, "accuracy": 100.0 * correct / count}


def build_infill(inp: FormulationInput) -> TrainablePart:
    s = inp.settings
    codec = WhitespaceCodec.for_tokenizer(inp.tokenizer)
    max_length = _length(inp, 256)
    model = CodeInfill(inp.encoder, s.get("encoder_source"))
    train = infill_features(inp.train_examples, inp.tokenizer, codec, max_length)
    dev = infill_features(inp.dev_examples, inp.tokenizer, codec, max_length) if inp.dev_examples else None
    collate = InfillCollator(inp.tokenizer, float(s.get("mask_probability", 0.15)))
    info = {"formulation": "infill", "whitespace_codec": codec.enabled, "lm_head_loaded": model.head_loaded}
    evaluate = None
    if dev:
        seed = inp.seed

        def eval_fn(m) -> dict[str, float]:
            import torch


            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return {"loss": mean_loss(m, dev, collate)}

        evaluate = eval_fn
        info["metric_for_best"] = "loss"
    return TrainablePart(inp.task.name, model, train, collate, dev, info, evaluate=evaluate)


register_formulation("generate", build_generate)
register_formulation("contrastive", build_contrastive)
register_formulation("match", build_match)
register_formulation("infill", build_infill)
