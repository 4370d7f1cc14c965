"""The nine XTREME target tasks (Hu et al. 2020), with the languages XTREME's evaluate.py uses."""

from __future__ import annotations

from xstilts.tasks.base import REGISTRY, Task, TaskKind


def _langs(spec: str) -> tuple[str, ...]:
    return tuple(sorted(spec.split()))


XNLI_LANGS = _langs("ar bg de el en es fr hi ru sw th tr ur vi zh")
PAWSX_LANGS = _langs("de en es fr ja ko zh")
UDPOS_LANGS = _langs(
    "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh"
)
PANX_LANGS = _langs(
    "af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt ru "
    "sw ta te th tl tr ur vi yo zh"
)
XQUAD_LANGS = _langs("ar de el en es hi ru th tr vi zh")
MLQA_LANGS = _langs("ar de en es hi vi zh")
TYDIQA_LANGS = _langs("ar bn en fi id ko ru sw te")
BUCC_LANGS = _langs("de fr ru zh")
XCOPA_LANGS = _langs("et ht id it qu sw ta th tr vi zh")
TATOEBA_LANGS = _langs(
    "af ar bg bn de el es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr nl pt ru sw ta te "
    "th tl tr ur vi zh"
)

# The 17 universal POS tags (plus X), as XTREME's udpos_labels.txt lists them.
UPOS_LABELS = (
    "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X"
).split()
PANX_LABELS = ("B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O")
XNLI_LABELS = ("contradiction", "entailment", "neutral")
PAWSX_LABELS = ("0", "1")

EN = ("en",)

XNLI = REGISTRY.register(
    Task(
        name="xnli",
        kind=TaskKind.SENTENCE_PAIR,
        splits={"train": EN, "dev": XNLI_LANGS, "test": XNLI_LANGS},
        metric="accuracy",
        labels=XNLI_LABELS,
        files={
            "train": ("xnli/train-{lang}.tsv",),
            "dev": ("xnli/dev-{lang}.tsv",),
            "test": ("xnli/test-{lang}.tsv",),
        },
        hub="facebook/xnli",
        description="Cross-lingual natural language inference (premise, hypothesis → 3 classes).",
    )
)

PAWSX = REGISTRY.register(
    Task(
        name="pawsx",
        kind=TaskKind.SENTENCE_PAIR,
        splits={"train": EN, "dev": PAWSX_LANGS, "test": PAWSX_LANGS},
        metric="accuracy",
        labels=PAWSX_LABELS,
        files={
            "train": ("pawsx/train-{lang}.tsv",),
            "dev": ("pawsx/dev-{lang}.tsv",),
            "test": ("pawsx/test-{lang}.tsv",),
        },
        hub="google-research-datasets/paws-x",
        description="Paraphrase identification on adversarial pairs (2 classes).",
    )
)

UDPOS = REGISTRY.register(
    Task(
        name="udpos",
        kind=TaskKind.TAGGING,
        splits={"train": EN, "dev": UDPOS_LANGS, "test": UDPOS_LANGS},
        metric="seqeval_f1",
        labels=tuple(UPOS_LABELS),
        files={
            # XTREME's preprocessed files first; else every raw UD treebank of the language.
            "train": ("udpos/train-{lang}.tsv", "UD_*/{lang}_*-ud-train.conllu"),
            "dev": ("udpos/dev-{lang}.tsv", "UD_*/{lang}_*-ud-dev.conllu"),
            "test": ("udpos/test-{lang}.tsv", "UD_*/{lang}_*-ud-test.conllu"),
        },
        hub="google/xtreme",
        description="Universal Dependencies v2.5 part-of-speech tagging (17 UPOS tags).",
    )
)

PANX = REGISTRY.register(
    Task(
        name="panx",
        kind=TaskKind.TAGGING,
        splits={"train": EN, "dev": PANX_LANGS, "test": PANX_LANGS},
        metric="seqeval_f1",
        labels=PANX_LABELS,
        files={
            "train": ("panx/train-{lang}.tsv",),
            "dev": ("panx/dev-{lang}.tsv",),
            "test": ("panx/test-{lang}.tsv",),
        },
        hub="google/xtreme",
        description="WikiANN named entities (PER, LOC, ORG in IOB2), Rahimi et al. splits.",
    )
)

XQUAD = REGISTRY.register(
    Task(
        name="xquad",
        kind=TaskKind.QA,
        # XQuAD has no training or dev data of its own: XTREME trains on SQuAD v1.1 (English).
        splits={"train": EN, "dev": EN, "test": XQUAD_LANGS},
        metric="squad",
        files={
            "train": ("squad/train-v1.1.json", "squad1.1/train-v1.1.json"),
            "dev": ("squad/dev-v1.1.json", "squad1.1/dev-v1.1.json"),
            "test": ("xquad/xquad.{lang}.json", "xquad/test-{lang}.json"),
        },
        hub="google/xquad",
        description="Cross-lingual extractive QA: SQuAD v1.1 dev paragraphs translated into 10 languages.",
    )
)

MLQA = REGISTRY.register(
    Task(
        name="mlqa",
        kind=TaskKind.QA,
        splits={"train": EN, "dev": MLQA_LANGS, "test": MLQA_LANGS},
        metric="mlqa",
        files={
            "train": ("squad/train-v1.1.json", "squad1.1/train-v1.1.json"),
            "dev": ("mlqa/MLQA_V1/dev/dev-context-{lang}-question-{lang}.json", "mlqa/dev-{lang}.json"),
            "test": (
                "mlqa/MLQA_V1/test/test-context-{lang}-question-{lang}.json",
                "mlqa/test-{lang}.json",
            ),
        },
        hub="google/xtreme",
        description="Multilingual extractive QA (context and question in the same language).",
    )
)

TYDIQA = REGISTRY.register(
    Task(
        name="tydiqa",
        kind=TaskKind.QA,
        # XTREME uses the GoldP dev set as its test set.
        splits={"train": EN, "test": TYDIQA_LANGS},
        metric="squad",
        files={
            # utils_preprocess.py writes tydiqa.goldp.{lang}.{train,dev}.json.
            "train": (
                "tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.{lang}.train.json",
                "tydiqa/train-{lang}.json",
            ),
            "test": (
                "tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json",
                "tydiqa/test-{lang}.json",
            ),
        },
        hub="google-research-datasets/tydiqa",
        description="TyDi QA gold passage task (typologically diverse extractive QA).",
    )
)

BUCC = REGISTRY.register(
    Task(
        name="bucc2018",
        kind=TaskKind.RETRIEVAL,
        splits={"dev": BUCC_LANGS, "test": BUCC_LANGS},
        metric="bucc_f1",
        files={
            # XTREME renames the BUCC archives' sample -> dev and training -> test.
            "dev": ("bucc2018/{lang}-en.dev.{lang}", "{lang}-en.sample.{lang}"),
            "test": ("bucc2018/{lang}-en.test.{lang}", "{lang}-en.training.{lang}"),
        },
        description="BUCC 2018 parallel sentence mining (xx–en); threshold tuned on dev, F1 on test.",
        extra={"mining": "margin"},
    )
)

TATOEBA = REGISTRY.register(
    Task(
        name="tatoeba",
        kind=TaskKind.RETRIEVAL,
        splits={"test": TATOEBA_LANGS},
        metric="tatoeba_accuracy",
        # LASER's files (line i <-> line i) first; XTREME's copy sorts the English side.
        files={"test": ("tatoeba.{lang3}-eng.{lang3}", "tatoeba/{lang}-en.{lang}")},
        description="Tatoeba sentence retrieval (xx → en nearest neighbour), top-1 accuracy.",
        extra={"mining": "nearest"},
    )
)

# XTREME-R's XCOPA (Ponti et al. 2020): a premise, "cause" or "effect", two alternatives. English
# training is COPA (SuperGLUE's COPA/train.jsonl, the same JSONL fields); each language has its
# own validation (100) and test (500) file, so dev is per language and there is no English dev.
XCOPA = REGISTRY.register(
    Task(
        name="xcopa",
        kind=TaskKind.MULTIPLE_CHOICE,
        reader="copa-jsonl",
        splits={"train": EN, "dev": XCOPA_LANGS, "test": XCOPA_LANGS},
        metric="accuracy",
        files={
            "train": ("COPA/train.jsonl", "copa/train.jsonl"),
            "dev": ("xcopa/data/{lang}/val.{lang}.jsonl", "xcopa/val.{lang}.jsonl"),
            "test": ("xcopa/data/{lang}/test.{lang}.jsonl", "xcopa/test.{lang}.jsonl"),
        },
        family="xtreme-r",  # a target, from XTREME-R: not one of the XTREME score's nine
        hub="cambridgeltl/xcopa",
        description="XCOPA (XTREME-R): causal commonsense reasoning, premise + cause/effect → 1 of 2 alternatives.",
        extra={"num_choices": 2},
    )
)

# XTREME's order of the nine tasks, as its tables print them.
XTREME_TASKS = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")
