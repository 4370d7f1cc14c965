"""Metrics with exactly the semantics of XTREME's ``evaluate.py`` (values are fractions ×100).

One module per family: :mod:`.classification` (accuracy), :mod:`.tagging` (seqeval chunk F1, in
both the seqeval 0.0.x behaviour that produced XTREME's published numbers and seqeval 1.x's),
:mod:`.squad` (SQuAD v1.1 EM/F1), :mod:`.mlqa` (MLQA's multilingual normalisation),
:mod:`.bucc` (pair F1 and threshold tuning) and :mod:`.tatoeba` (top-1 accuracy).
"""

from xstilts.evaluation.metrics.bucc import bucc_extract, bucc_f1, bucc_optimal_threshold
from xstilts.evaluation.metrics.classification import accuracy
from xstilts.evaluation.metrics.mlqa import mlqa_scores
from xstilts.evaluation.metrics.squad import squad_scores
from xstilts.evaluation.metrics.tagging import SEQEVAL_MODES, get_entities, seqeval_scores
from xstilts.evaluation.metrics.tatoeba import tatoeba_accuracy

__all__ = [
    "SEQEVAL_MODES",
    "accuracy",
    "bucc_extract",
    "bucc_f1",
    "bucc_optimal_threshold",
    "get_entities",
    "mlqa_scores",
    "seqeval_scores",
    "squad_scores",
    "tatoeba_accuracy",
]
