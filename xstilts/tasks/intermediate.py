"""The paper's English intermediate tasks (Phang et al. 2020), in their official release formats.

Nine tasks: ANLI+ (ANLI R1-R3 with MNLI and SNLI, one NLI head), MNLI, QQP, SQuAD v1.1, SQuAD
v2.0, HellaSwag, CosmosQA, CommonsenseQA and CCG supertagging. ANLI and SNLI are registered on
their own as well, because ANLI+ is read as the concatenation of its components.

Readers live in :mod:`xstilts.data.nlu_readers` (``Task.reader`` names one); quality after
phase 1 comes from :func:`xstilts.evaluation.metrics_nlu.score_intermediate`. Splits are the
labelled ones: the GLUE/leaderboard test sets (MNLI, QQP, SQuAD, HellaSwag, CosmosQA,
CommonsenseQA) carry no labels and are not registered. File patterns match any path that ends
with them (see :mod:`xstilts.data.readers`); the first that matches wins.
"""

from __future__ import annotations

from xstilts.tasks.base import REGISTRY, Task, TaskKind
from xstilts.tasks.sources import SQUAD_V1, TaskSource, Unavailable, hub
from xstilts.tasks.sources import TRAIN_DEV as HUB_TRAIN_DEV
from xstilts.tasks.sources import TRAIN_DEV_TEST as HUB_TRAIN_DEV_TEST

EN = ("en",)
TRAIN_DEV = {"train": EN, "dev": EN}
TRAIN_DEV_TEST = {"train": EN, "dev": EN, "test": EN}

# The XNLI label names, so an NLI head can be read the same way in phase 1 and phase 2.
NLI_LABELS = ("contradiction", "entailment", "neutral")


# ANLI keeps each round in a folder: the round-1 file is located, rounds 2 and 3 are read from
# the sibling folders (xstilts.data.nlu_readers).
_ANLI_FILES = {
    s: (f"anli_v1.0/R1/{s}.jsonl", f"anli/R1/{s}.jsonl") for s in ("train", "dev", "test")
}


def _register(**kwargs) -> Task:
    kwargs.setdefault("family", "nlu")
    kwargs.setdefault("score_split", "dev")
    return REGISTRY.register(Task(**kwargs))


ANLI_PLUS = _register(
    name="anli_plus",
    train_examples=1_105_719,
    kind=TaskKind.SENTENCE_PAIR,
    reader="anli_plus",
    splits=TRAIN_DEV_TEST,
    metric="accuracy",
    labels=NLI_LABELS,
    # Located by ANLI, which every split needs; training adds MNLI and SNLI. Dev and test are
    # ANLI's alone: the adversarial rounds are what ANLI+ is measured on, and MNLI/SNLI dev
    # (about 20k pairs) would drown ANLI's 3.2k.
    files=_ANLI_FILES,
    description="ANLI+ (Nie et al. 2020): ANLI R1-R3 + MNLI + SNLI for training, one 3-way NLI head.",
    extra={"components": {"train": ("anli", "mnli", "snli"), "dev": ("anli",), "test": ("anli",)}},
)

MNLI = _register(
    name="mnli",
    train_examples=392_702,
    kind=TaskKind.SENTENCE_PAIR,
    reader="nli",
    splits=TRAIN_DEV,
    metric="accuracy",
    labels=NLI_LABELS,
    files={
        "train": (
            "multinli_1.0/multinli_1.0_train.jsonl",
            "multinli_1.0_train.jsonl",
            "multinli_1.0/multinli_1.0_train.txt",
            "MNLI/train.tsv",
            "mnli/mnli_train.jsonl",  # jiant's JSONL (premise, hypothesis, label)
        ),
        "dev": (
            "multinli_1.0/multinli_1.0_dev_matched.jsonl",
            "multinli_1.0_dev_matched.jsonl",
            "multinli_1.0/multinli_1.0_dev_matched.txt",
            "MNLI/dev_matched.tsv",
            "mnli/mnli_val.jsonl",
        ),
    },
    source=hub("nyu-mll/multi_nli", None, {"train": ("train",), "dev": ("validation_matched",)},
               folder="data", write="nli-release"),
    description="MultiNLI (dev = matched); original jsonl with gold_label, GLUE TSV or jiant JSONL.",
)

QQP = _register(
    name="qqp",
    train_examples=363_846,
    kind=TaskKind.SENTENCE_PAIR,
    reader="qqp",
    splits=TRAIN_DEV,
    metric="accuracy",
    labels=("0", "1"),
    files={s: (f"QQP/{s}.tsv", f"qqp/{s}.tsv") for s in ("train", "dev")},
    source=hub("nyu-mll/glue", "qqp", HUB_TRAIN_DEV, write="qqp-tsv"),
    description="Quora Question Pairs, GLUE TSV (id qid1 qid2 question1 question2 is_duplicate).",
    extra={"report_f1": True, "positive_label": "1"},
)

SQUAD_V1 = _register(
    name="squad_v1",
    train_examples=87_599,
    kind=TaskKind.QA,
    reader="squad",
    splits=TRAIN_DEV,
    metric="squad",
    files={
        s: (f"squad/{s}-v1.1.json", f"squad1.1/{s}-v1.1.json", f"{s}-v1.1.json")
        for s in ("train", "dev")
    },
    source=TaskSource({"*": SQUAD_V1}),
    description="SQuAD v1.1 extractive QA (SQuAD JSON); EM/F1 as evaluate-v1.1.py.",
)

SQUAD_V2 = _register(
    name="squad_v2",
    train_examples=130_319,
    kind=TaskKind.QA,
    reader="squad",
    splits=TRAIN_DEV,
    metric="squad_v2",
    files={
        s: (f"squad/{s}-v2.0.json", f"squad2.0/{s}-v2.0.json", f"{s}-v2.0.json")
        for s in ("train", "dev")
    },
    source=hub("rajpurkar/squad_v2", None, HUB_TRAIN_DEV, folder="squad_v2", write="squad-json",
               verified="folder squad_v2/ not seen"),
    description="SQuAD v2.0 with unanswerable questions; EM/F1 overall, HasAns and NoAns as evaluate-v2.0.py.",
)

HELLASWAG = _register(
    name="hellaswag",
    train_examples=39_905,
    kind=TaskKind.MULTIPLE_CHOICE,
    reader="hellaswag",
    splits=TRAIN_DEV,
    metric="accuracy",
    files={
        "train": ("hellaswag/hellaswag_train.jsonl", "hellaswag_train.jsonl"),
        "dev": ("hellaswag/hellaswag_val.jsonl", "hellaswag_val.jsonl"),
    },
    source=hub("Rowan/hellaswag", None, HUB_TRAIN_DEV, folder="default", revision="refs/convert/parquet",
               write="jsonl-rows", verified="the repository holds a script; its parquet export is read"),
    description="HellaSwag sentence completion: context ctx_a, choices ctx_b + each of 4 endings.",
    extra={"num_choices": 4},
)

COSMOSQA = _register(
    name="cosmosqa",
    train_examples=25_262,
    kind=TaskKind.MULTIPLE_CHOICE,
    reader="cosmosqa",
    splits=TRAIN_DEV,
    metric="accuracy",
    files={
        "train": ("cosmosqa/data/train.csv", "cosmosqa/train.csv"),
        "dev": ("cosmosqa/data/valid.csv", "cosmosqa/valid.csv"),
    },
    source=hub("allenai/cosmos_qa", None, HUB_TRAIN_DEV, folder="default", revision="refs/convert/parquet",
               write="cosmos-csv", verified="the repository holds a script; export path not seen"),
    description="Cosmos QA commonsense reading comprehension (CSV: id, context, question, answer0..3, label).",
    extra={"num_choices": 4},
)

COMMONSENSEQA = _register(
    name="commonsenseqa",
    train_examples=9_741,
    kind=TaskKind.MULTIPLE_CHOICE,
    reader="commonsenseqa",
    splits=TRAIN_DEV,
    metric="accuracy",
    files={
        "train": ("commonsenseqa/train_rand_split.jsonl", "train_rand_split.jsonl"),
        "dev": ("commonsenseqa/dev_rand_split.jsonl", "dev_rand_split.jsonl"),
    },
    source=hub("tau/commonsense_qa", None, HUB_TRAIN_DEV, folder="data", write="jsonl-rows",
               verified="file names under data/ not seen"),
    description="CommonsenseQA (random split), original JSONL or hub schema; 5 choices A-E.",
    extra={"num_choices": 5},
)

CCG = _register(
    name="ccg",
    train_examples=38_015,
    kind=TaskKind.TAGGING,
    reader="ccg_auto",
    splits=TRAIN_DEV_TEST,
    metric="token_accuracy",
    labels=None,  # the supertags of the training data: xstilts.data.nlu_readers.nlu_label_set
    files={s: (f"ccg/{s}.auto", f"ccgbank/{s}.auto") for s in ("train", "dev", "test")},
    source=TaskSource({"*": Unavailable("CCGbank is licensed by the LDC (LDC2005T13): no public copy")}),
    description="CCGbank supertagging (AUTO format; LDC-licensed, not downloadable); token accuracy.",
    extra={
        # A CCGbank release (data/AUTO/NN/wsj_NNNN.auto): the standard sections per split.
        "sections": {"train": tuple(range(2, 22)), "dev": (0,), "test": (23,)},
        "top_k": None,
        "min_count": 1,
        "unknown_tag": "<UNK>",
    },
)

# ANLI+'s components, registered on their own too (each readable and trainable alone).
ANLI = _register(
    name="anli",
    kind=TaskKind.SENTENCE_PAIR,
    reader="anli",
    splits=TRAIN_DEV_TEST,
    metric="accuracy",
    labels=NLI_LABELS,
    files=_ANLI_FILES,
    source=hub("facebook/anli", None,
               {s: tuple(f"{s}_r{r}" for r in (1, 2, 3)) for s in ("train", "dev", "test")},
               folder="plain_text", write="anli-release", verified="folder plain_text/ not seen"),
    description="Adversarial NLI, rounds 1-3 together (jsonl: uid, premise, hypothesis, label e/n/c).",
    extra={"rounds": ("R1", "R2", "R3")},
)

SNLI = _register(
    name="snli",
    kind=TaskKind.SENTENCE_PAIR,
    reader="nli",
    splits=TRAIN_DEV_TEST,
    metric="accuracy",
    labels=NLI_LABELS,
    files={
        s: (f"snli_1.0/snli_1.0_{s}.jsonl", f"snli_1.0_{s}.jsonl", f"snli_1.0/snli_1.0_{s}.txt")
        for s in ("train", "dev", "test")
    },
    source=hub("stanfordnlp/snli", None, HUB_TRAIN_DEV_TEST, folder="plain_text", write="nli-release",
               verified="folder plain_text/ not seen"),
    description="Stanford NLI 1.0 (jsonl: sentence1, sentence2, gold_label; '-' pairs left out).",
)

# The nine intermediate tasks of Phang et al. (2020), in the paper's order.
PAPER_NLU_TASKS = (
    "anli_plus", "mnli", "qqp", "squad_v1", "squad_v2", "hellaswag", "cosmosqa", "commonsenseqa", "ccg",
)  # fmt: skip
