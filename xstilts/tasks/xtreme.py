"""The nine XTREME target tasks (Hu et al. 2020), with the languages XTREME's evaluate.py uses."""

from __future__ import annotations

from xstilts.tasks.base import REGISTRY, Task, TaskKind
from xstilts.tasks.sources import (
    QA_COLUMNS,
    SQUAD_V1,
    TRAIN_DEV_TEST,
    HubTable,
    ReleaseArchive,
    TaskSource,
    hub,
)


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

# TyDiQA's ids start with the language's English name (google-research-datasets/tydiqa).
_TYDIQA_NAMES = {
    "ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}  # fmt: skip

XNLI = REGISTRY.register(
    Task(
        name="xnli",
        train_examples=392_702,
        kind=TaskKind.SENTENCE_PAIR,
        splits={"train": EN, "dev": XNLI_LANGS, "test": XNLI_LANGS},
        metric="accuracy",
        labels=XNLI_LABELS,
        files={
            "train": ("xnli/train-{lang}.tsv",),
            "dev": ("xnli/dev-{lang}.tsv",),
            "test": ("xnli/test-{lang}.tsv",),
        },
        source=hub("facebook/xnli", "{lang}", TRAIN_DEV_TEST,
                   columns={"text_a": "premise", "text_b": "hypothesis", "label": "label"},
                   label_names=("entailment", "neutral", "contradiction"),
                   verified="layout {lang}/{split}-00000-of-00001.parquet seen for en",
                   notes=("the hub's test split carries the labels XTREME's download withholds",)),
        description="Cross-lingual natural language inference (premise, hypothesis → 3 classes).",
    )
)

PAWSX = REGISTRY.register(
    Task(
        name="pawsx",
        train_examples=49_401,
        kind=TaskKind.SENTENCE_PAIR,
        splits={"train": EN, "dev": PAWSX_LANGS, "test": PAWSX_LANGS},
        metric="accuracy",
        labels=PAWSX_LABELS,
        files={
            "train": ("pawsx/train-{lang}.tsv",),
            "dev": ("pawsx/dev-{lang}.tsv",),
            "test": ("pawsx/test-{lang}.tsv",),
        },
        source=hub("google-research-datasets/paws-x", "{lang}", TRAIN_DEV_TEST,
                   columns={"id": "id", "text_a": "sentence1", "text_b": "sentence2", "label": "label"},
                   label_names=("0", "1"), verified="file names under {lang}/ not seen",
                   notes=("pairs whose label the release replaced with -1 are left out",)),
        description="Paraphrase identification on adversarial pairs (2 classes).",
    )
)

UDPOS = REGISTRY.register(
    Task(
        name="udpos",
        train_examples=21_253,
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
        source=hub("google/xtreme", "udpos.{Name}", TRAIN_DEV_TEST,
                   columns={"tokens": "tokens", "tags": "pos_tags"},
                   label_names=tuple(UPOS_LABELS),  # pos_tags' ClassLabel order (the card)
                   verified="udpos.English/train-* seen; Kazakh has no dev, tl/th/yo test only",
                   notes=("google/xtreme merges every UD 2.5 treebank of a language, as XTREME does",)),
        description="Universal Dependencies v2.5 part-of-speech tagging (17 UPOS tags).",
    )
)

PANX = REGISTRY.register(
    Task(
        name="panx",
        train_examples=20_000,
        kind=TaskKind.TAGGING,
        splits={"train": EN, "dev": PANX_LANGS, "test": PANX_LANGS},
        metric="seqeval_f1",
        labels=PANX_LABELS,
        files={
            "train": ("panx/train-{lang}.tsv",),
            "dev": ("panx/dev-{lang}.tsv",),
            "test": ("panx/test-{lang}.tsv",),
        },
        source=hub("google/xtreme", "PAN-X.{lang}", TRAIN_DEV_TEST,
                   columns={"tokens": "tokens", "tags": "ner_tags"},
                   label_names=("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"),  # the card's
                   verified="PAN-X.de/{split}-00000-of-00001.parquet seen",
                   notes=("the hub's test split carries the labels XTREME's download withholds",)),
        description="WikiANN named entities (PER, LOC, ORG in IOB2), Rahimi et al. splits.",
    )
)

XQUAD = REGISTRY.register(
    Task(
        name="xquad",
        train_examples=87_599,
        kind=TaskKind.QA,
        # XQuAD has no training or dev data of its own: XTREME trains on SQuAD v1.1 (English).
        splits={"train": EN, "dev": EN, "test": XQUAD_LANGS},
        metric="squad",
        files={
            "train": ("squad/train-v1.1.json", "squad1.1/train-v1.1.json"),
            "dev": ("squad/dev-v1.1.json", "squad1.1/dev-v1.1.json"),
            "test": ("xquad/xquad.{lang}.json", "xquad/test-{lang}.json"),
        },
        source=TaskSource({
            "train": SQUAD_V1,
            "dev": SQUAD_V1,
            "test": HubTable("google/xquad", "xquad.{lang}", {"test": ("validation",)},
                             columns={k: v for k, v in QA_COLUMNS.items() if k != "title"},
                             verified="xquad.{lang}/validation-00000-of-00001.parquet seen"),
        }),
        description="Cross-lingual extractive QA: SQuAD v1.1 dev paragraphs translated into 10 languages.",
    )
)

MLQA = REGISTRY.register(
    Task(
        name="mlqa",
        train_examples=87_599,
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
        source=TaskSource(
            {
                "train": SQUAD_V1,
                "*": HubTable("google/xtreme", "MLQA.{lang}.{lang}",
                              {"dev": ("validation",), "test": ("test",)}, columns=QA_COLUMNS),
            },
            notes=("facebook/mlqa holds only a loading script; google/xtreme has the parquet copy",),
        ),
        description="Multilingual extractive QA (context and question in the same language).",
    )
)

TYDIQA = REGISTRY.register(
    Task(
        name="tydiqa",
        train_examples=3_696,
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
        source=hub("google-research-datasets/tydiqa", "secondary_task",
                   {"train": ("train",), "test": ("validation",)}, columns=QA_COLUMNS,
                   id_prefix={lang: f"{name}-" for lang, name in _TYDIQA_NAMES.items()},
                   verified="secondary_task file names not seen",
                   notes=("one config holds every language; rows are kept by their id prefix",)),
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
        source=TaskSource(
            {"*": ReleaseArchive(
                "https://comparable.limsi.fr/bucc2018/bucc2018-{lang}-en.{name}-gold.tar.bz2",
                {"dev": "sample", "test": "training"}, into="bucc2018",
                verified="archive names from the former google/xtreme loading script")},
            notes=("the hub copies (google/xtreme bucc18.*) keep only the gold pairs, without the "
                   "distractor sentences that make mining hard, so the release archives are used",),
        ),
        reader="bucc",
        extra={"mining": "margin", "submission": "pairs"},
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
        # source_sentence is the non-English side, target_sentence English (the former loading
        # script); its one validation split is the test set XTREME scores.
        source=hub("google/xtreme", "tatoeba.{lang3}", {"test": ("validation",)},
                   columns={"source": "source_sentence", "target": "target_sentence"},
                   path="tatoeba/tatoeba.{lang3}-eng.{lang3}",
                   verified="tatoeba.deu/validation-00000-of-00001.parquet seen",
                   notes=("written as LASER's aligned pair files (line i <-> line i)",)),
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
        source=TaskSource(
            {
                "train": ReleaseArchive(
                    "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/COPA.zip",
                    {"train": "COPA"}, members=("COPA/train.jsonl",),
                    verified="SuperGLUE's COPA release (COPA/train.jsonl, val.jsonl, test.jsonl)"),
                "*": HubTable("cambridgeltl/xcopa", "{lang}", {"dev": ("validation",), "test": ("test",)},
                              write="jsonl-rows", verified="config folders {lang}/ seen, file names not"),
            },
            notes=("English training is SuperGLUE's COPA (400 examples); XCOPA itself has only "
                   "validation (100) and test (500) per language",),
        ),
        description="XCOPA (XTREME-R): causal commonsense reasoning, premise + cause/effect → 1 of 2 alternatives.",
        extra={"num_choices": 2},
    )
)

# XTREME's order of the nine tasks, as its tables print them.
XTREME_TASKS = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")
