"""The quality of a phase-1 code model on its task: generation (exact match, BLEU, CodeBLEU,
pass@1 by execution) and NL → code retrieval (MRR). The models are :mod:`xstilts.models.codegen`'s;
the metrics are :mod:`xstilts.evaluation.code_metrics`'s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from xstilts.data.code_readers import read_code_examples
from xstilts.errors import MissingDataError
from xstilts.evaluation.code_metrics import check_program, code_generation_scores, retrieval_mrr
from xstilts.evaluation.execution import Sandbox
from xstilts.models.codegen import (
    CodeContrastive,
    CodeGenerator,
    ContrastiveCollator,
    GenerationFeaturizer,
    WhitespaceCodec,
    contrastive_features,
    generate_code,
)
from xstilts.tasks import get_task


def evaluate_generation(
    model: CodeGenerator,
    featurizer: GenerationFeaturizer,
    examples: Sequence[Any],
    *,
    language: str | None = "python",
    num_beams: int = 1,
    batch_size: int = 32,
    with_codebleu: bool = True,
    execute: bool = True,
    sandbox=None,
) -> dict[str, float]:
    """Generate for ``examples`` and score against their targets: exact match, BLEU, CodeXGLUE's
    smoothed BLEU-4, CodeBLEU (when the language has a grammar installed) and, when every example
    carries tests (MBPP, HumanEval) and ``execute``, pass@1 by execution; all ×100."""
    sources = [featurizer.source_text(ex) for ex in examples]
    preds = generate_code(model, featurizer, sources, batch_size=batch_size, num_beams=num_beams)
    scores = code_generation_scores(preds, [ex.target for ex in examples], language if with_codebleu else None)
    if execute and all(getattr(ex, "tests", None) for ex in examples) and examples:
        scores["pass@1"] = execution_pass_at_1(examples, preds, sandbox=sandbox)
    return scores


def evaluate_code_task(
    model: CodeGenerator,
    featurizer: GenerationFeaturizer,
    task: Any,
    data_dir: Any,
    *,
    split: str | None = None,
    languages: Sequence[str] | None = None,
    limit: int | None = None,
    num_beams: int = 1,
) -> dict[str, dict[str, float]]:
    """Per-language generation quality of a phase-1 ``generate`` model on a code task's files,
    e.g. MCoNaLa (es/ja/ru intents → Python) right after training on English CoNaLa: the
    cross-lingual probe of code generation itself. Languages whose files are absent are left out
    (the result says which were scored)."""
    task = get_task(task)
    split = split or task.score_split
    out: dict[str, dict[str, float]] = {}
    for lang in languages or task.splits.get(split, ()):
        try:
            examples = read_code_examples(task, data_dir, split, lang)
        except MissingDataError:
            continue
        examples = examples[:limit] if limit else examples
        language = str(task.extra.get("code_language", "python"))
        out[lang] = evaluate_generation(model, featurizer, examples, language=language, num_beams=num_beams)
        out[lang]["examples"] = float(len(examples))
    return out


def execution_pass_at_1(examples: Sequence[Any], completions: Sequence[str], *, sandbox=None, workers: int = 2) -> float:
    """pass@1 ×100 of one (greedy) completion per problem, executed against the problem's tests
    in the sandbox of :mod:`xstilts.evaluation.execution` (MBPP, HumanEval)."""
    sandbox = sandbox or Sandbox()
    results = sandbox.run_many([check_program(ex, c) for ex, c in zip(examples, completions)], workers=workers)
    return 100.0 * sum(r.passed for r in results) / len(results) if results else 0.0


# --------------------------------------------------------------------------- contrastive


@torch.no_grad()
def evaluate_retrieval(
    model: CodeContrastive, tokenizer, codec: WhitespaceCodec, examples, *, pool_size: int = 1000,
    batch_size: int = 64, max_length: int = 128,
) -> dict[str, float]:  # fmt: skip
    """NL → code MRR ×100 (CodeSearchNet pools of ``pool_size``) with the bi-encoder."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    feats = contrastive_features(examples, tokenizer, codec, max_length)
    collate = ContrastiveCollator(tokenizer.pad_token_id)
    qs, cs = [], []
    try:
        for start in range(0, len(feats), batch_size):
            b = collate(feats[start : start + batch_size])
            qs.append(model.embed(b["input_ids"].to(device), b["attention_mask"].to(device)).cpu())
            cs.append(model.embed(b["code_input_ids"].to(device), b["code_attention_mask"].to(device)).cpu())
    finally:
        model.train(was_training)
    return {"mrr": retrieval_mrr(torch.cat(qs).numpy(), torch.cat(cs).numpy(), pool_size=pool_size)}
