"""seqeval chunk F1 in both behaviours: hand-computed cases, the X trap, cross-checks on real files."""

import random
import warnings

import pytest
from conftest import SHARED_DATA, shared_file

from xstilts.evaluation import layout
from xstilts.evaluation.metrics.tagging import get_entities, seqeval_scores

UPOS = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
PANX = ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]
UDPOS_DIR = SHARED_DATA / "udpos" / "xtreme-format" / "download" / "udpos"
PANX_DIR = SHARED_DATA / "panx" / "download" / "panx"


def test_bio_perfect_all_wrong_and_partial():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    perfect = seqeval_scores(gold, gold)
    assert perfect == {"f1": 100.0, "precision": 100.0, "recall": 100.0}
    wrong = seqeval_scores(gold, [["O", "O", "O", "O"], ["O", "O"]])
    assert wrong == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    # PER truncated to one token (wrong chunk), LOC right, ORG missed, an extra PER predicted:
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-PER", "B-ORG"]]
    # gold chunks 3, predicted 4, correct 2 (LOC, ORG) -> P 1/2, R 2/3, F1 4/7
    s = seqeval_scores(gold, pred)
    assert s["precision"] == pytest.approx(50.0)
    assert s["recall"] == pytest.approx(200 / 3)
    assert s["f1"] == pytest.approx(400 / 7)


def test_upos_runs_of_one_tag_are_one_chunk():
    # Without a BIO prefix seqeval reads the first letter as the tag: NOUN NOUN is one chunk.
    assert get_entities([["NOUN", "NOUN", "VERB"]], "legacy") == [("NOUN", 0, 1), ("VERB", 2, 2)]
    # SCONJ/SYM start with S (a "single" tag): every token is its own chunk.
    assert get_entities([["SYM", "SYM"]], "legacy") == [("SYM", 0, 0), ("SYM", 1, 1)]


def test_x_after_first_sentence_differs_between_legacy_and_v1():
    gold = [["NOUN", "VERB"], ["X", "NOUN"]]
    pred = [["NOUN", "NOUN"], ["X", "NOUN"]]
    # legacy (seqeval 0.0.x): gold chunks NOUN(0) VERB(1) X(3) NOUN(4); predicted NOUN(0-1) X(3)
    # NOUN(4) -> 2 of 3 predicted correct, 2 of 4 gold found: F1 = 2*(2/3)(1/2)/(7/6) = 4/7.
    assert get_entities(gold, "legacy") == [
        ("NOUN", 0, 0),
        ("VERB", 1, 1),
        ("X", 3, 3),
        ("NOUN", 4, 4),
    ]
    assert seqeval_scores(gold, pred, "legacy")["f1"] == pytest.approx(400 / 7)
    # v1 (seqeval >= 1.0): X and the sentence-separating O share type "_", so the X does not
    # open a chunk; the chunk that ends before NOUN(4) is (_, 1, 3) in gold and (_, 0, 3) predicted.
    assert get_entities(gold, "v1") == [("OUN", 0, 0), ("ERB", 1, 1), ("_", 1, 3), ("OUN", 4, 4)]
    # predicted (OUN,0,1) (_,0,3) (OUN,4,4): 1 correct -> P 1/3, R 1/4, F1 2/7.
    assert seqeval_scores(gold, pred, "v1")["f1"] == pytest.approx(200 / 7)


def test_v1_matches_installed_seqeval_on_the_small_case():
    seqeval = pytest.importorskip("seqeval.metrics")
    gold = [["NOUN", "VERB"], ["X", "NOUN"], ["CCONJ", "SCONJ", "X"]]
    pred = [["NOUN", "NOUN"], ["X", "NOUN"], ["SCONJ", "CCONJ", "X"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = seqeval.f1_score(gold, pred) * 100
    assert seqeval_scores(gold, pred, "v1")["f1"] == expected
    assert seqeval_scores(gold, pred, "legacy")["f1"] != expected


def test_unknown_mode_rejected():
    with pytest.raises(ValueError, match="legacy"):
        seqeval_scores([["X"]], [["X"]], "strict")


def _perturb(sentences, labels, rate, seed):
    rng = random.Random(seed)
    return [[t if rng.random() >= rate else rng.choice(labels) for t in s] for s in sentences]


def _legacy_upos_chunks(sentences):
    """Independent reading of seqeval 0.0.x on UPOS tags: a chunk is a maximal run of one tag
    inside a sentence, except tags starting with S (SCONJ, SYM), which are one token each."""
    chunks, offset = set(), 0
    for sentence in sentences:
        i = 0
        while i < len(sentence):
            j = i
            if not sentence[i].startswith("S"):
                while j + 1 < len(sentence) and sentence[j + 1] == sentence[i]:
                    j += 1
            chunks.add((sentence[i], offset + i, offset + j))
            i = j + 1
        offset += len(sentence) + 1
    return chunks


def _prf(gold_chunks, pred_chunks):
    correct = len(gold_chunks & pred_chunks)
    p = correct / len(pred_chunks) if pred_chunks else 0
    r = correct / len(gold_chunks) if gold_chunks else 0
    return 2 * p * r / (p + r) * 100 if p + r else 0.0


def _udpos_files():
    files = sorted(UDPOS_DIR.glob("test-*.tsv"))
    if not files:
        pytest.skip(f"no UDPOS test files under {UDPOS_DIR}")
    return files


def test_real_udpos_v1_equals_seqeval_122_and_legacy_equals_independent_reading():
    seqeval = pytest.importorskip("seqeval.metrics")
    differing = []
    for path in _udpos_files():
        gold = layout.read_labels(path, "udpos")
        assert seqeval_scores(gold, gold, "legacy")["f1"] == 100.0
        assert seqeval_scores(gold, gold, "v1")["f1"] == 100.0
        pred = _perturb(gold, UPOS, 0.2, seed=len(path.name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = [
                seqeval.f1_score(gold, pred),
                seqeval.precision_score(gold, pred),
                seqeval.recall_score(gold, pred),
            ]
        v1 = seqeval_scores(gold, pred, "v1")
        assert [v1["f1"], v1["precision"], v1["recall"]] == [x * 100 for x in expected], path.name
        legacy = seqeval_scores(gold, pred, "legacy")
        independent = _prf(_legacy_upos_chunks(gold), _legacy_upos_chunks(pred))
        assert legacy["f1"] == pytest.approx(independent, abs=1e-9), path.name
        if abs(legacy["f1"] - v1["f1"]) > 1e-9:
            differing.append(path.name)
    # The trap is real on these files: several languages score differently under seqeval 1.x.
    assert len(differing) >= 3, differing


def test_real_udpos_x_tagged_as_noun_changes_v1_score():
    path = shared_file("udpos/xtreme-format/download/udpos/test-en.tsv")
    gold = layout.read_labels(path, "udpos")
    assert any("X" in s for s in gold[1:])  # X occurs after the first sentence
    pred = [["NOUN" if t == "X" else t for t in s] for s in gold]
    assert seqeval_scores(gold, pred, "legacy")["f1"] != pytest.approx(
        seqeval_scores(gold, pred, "v1")["f1"], abs=1e-9
    )


def test_real_panx_both_modes_equal_seqeval_122():
    seqeval = pytest.importorskip("seqeval.metrics")
    files = sorted(PANX_DIR.glob("dev-*.tsv"))
    if not files:
        pytest.skip(f"no PAN-X dev files under {PANX_DIR}")
    for path in files:
        gold = layout.read_labels(path, "panx")
        pred = _perturb(gold, PANX, 0.15, seed=len(path.name) + 7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = seqeval.f1_score(gold, pred) * 100
        assert seqeval_scores(gold, pred, "v1")["f1"] == expected, path.name
        assert seqeval_scores(gold, pred, "legacy")["f1"] == expected, path.name
