"""Code-generation tasks (NL → code) as intermediate tasks and evaluation sets.

Every code task reads into :class:`xstilts.data.examples.GenerationExample` (``source`` = the
natural-language side, ``target`` = the code), whatever its kind, so that one task can be learnt
in any of the ways of :mod:`xstilts.models.codegen` (generate, contrastive, match, infill). The
reader for each entry is named by ``Task.reader`` and lives in :mod:`xstilts.data.code_readers`.

Languages: the split → languages map holds the *natural* language of the intents (``en``; MCoNaLa
``es ja ru``), except CodeSearchNet, whose six "languages" are the *programming* languages (its
docstrings are English): that is the axis its files are organised by.

Metric names: ``code_generation`` (exact match, sacrebleu BLEU, CodeXGLUE's smoothed BLEU-4,
CodeBLEU), ``pass_at_k`` (execution), ``mrr`` (NL → code retrieval); see
:mod:`xstilts.evaluation.code_metrics`.
"""

from __future__ import annotations

from xstilts.tasks.base import REGISTRY, Task, TaskKind
from xstilts.tasks.sources import TRAIN_DEV_TEST, ReleaseArchive, TaskSource, Unavailable, hub

EN = ("en",)
CSN_LANGS = ("go", "java", "javascript", "php", "python", "ruby")
MCONALA_LANGS = ("es", "ja", "ru")

# MBPP's own split, by task id (Austin et al. 2021, and the hub dataset's four splits).
MBPP_SPLITS: dict[str, tuple[int, int]] = {
    "prompt": (1, 10),
    "test": (11, 510),
    "dev": (511, 600),
    "train": (601, 974),
}

# The conventional Django split (Oda et al. 2015; used by Ling et al. 2016, Yin & Neubig 2017):
# the first 16000 lines train, the next 1000 dev, the last 1805 test, in file order.
DJANGO_SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 16000),
    "dev": (16000, 17000),
    "test": (17000, 18805),
}

CONALA = REGISTRY.register(
    Task(
        name="conala",
        train_examples=2_379,
        kind=TaskKind.GENERATION,
        family="code",
        reader="conala_json",
        splits={"train": EN, "test": EN},
        metric="code_generation",
        files={
            "train": (
                "conala_curated/train.json",
                "conala/conala-train.json",
                "conala-corpus/conala-train.json",
                "conala-train.json",
            ),
            "test": ("conala/conala-test.json", "conala-corpus/conala-test.json", "conala-test.json"),
        },
        source=hub("neulab/conala", "curated", {"train": ("train",), "test": ("test",)},
                   revision="refs/convert/parquet", write="json-array-rows",
                   path="conala-corpus/conala-{split}.json"),
        description="CoNaLa curated: StackOverflow intents (rewritten where available) → Python snippets.",
        extra={"code_language": "python"},
    )
)

CONALA_MINED = REGISTRY.register(
    Task(
        name="conala_mined",
        train_examples=593_891,
        kind=TaskKind.GENERATION,
        family="code",
        reader="conala_mined",
        splits={"train": EN},
        metric="code_generation",
        files={"train": ("conala-corpus/conala-mined.jsonl", "conala/conala-mined.jsonl", "conala-mined.jsonl")},
        source=hub("neulab/conala", "mined", {"train": ("train",)}, revision="refs/convert/parquet",
                   write="jsonl-rows", path="conala-corpus/conala-mined.jsonl"),
        description="CoNaLa mined: 600k automatically mined intent/snippet pairs (training only; noisy).",
        extra={"code_language": "python", "hub_config": "mined"},
    )
)

DJANGO = REGISTRY.register(
    Task(
        name="django",
        train_examples=16_000,
        kind=TaskKind.GENERATION,
        family="code",
        reader="django",
        splits={"train": EN, "dev": EN, "test": EN},
        metric="code_generation",
        files={split: ("django/all.anno", "all.anno") for split in DJANGO_SPLITS},
        description="Django: English pseudo-code → one line of Python (16000/1000/1805 split in file order).",
        extra={"code_language": "python", "line_ranges": DJANGO_SPLITS},
        source=TaskSource({"*": ReleaseArchive(
            "https://raw.githubusercontent.com/odashi/ase15-django-dataset/master/django",
            into="django", files=("all.anno", "all.code"),
            verified="the ASE'15 release repository; no hub copy")}),
    )
)

CONCODE = REGISTRY.register(
    Task(
        name="concode",
        train_examples=100_000,
        kind=TaskKind.GENERATION,
        family="code",
        reader="concode",
        splits={"train": EN, "dev": EN, "test": EN},
        # CodeXGLUE hides the test references (empty "code"), so quality is reported on dev.
        score_split="dev",
        metric="code_generation",
        files={
            split: (f"text-to-code/dataset/concode/{split}.json", f"concode/{split}.json")
            for split in ("train", "dev", "test")
        },
        source=hub("google/code_x_glue_tc_text_to_code", None, TRAIN_DEV_TEST, folder="data",
                   write="jsonl-rows",
                   notes=("CodeXGLUE's test split has no references (empty code); quality is read on dev",)),
        description="CONCODE (CodeXGLUE text-to-code): Javadoc + class context → Java method.",
        extra={"code_language": "java"},
    )
)

MBPP = REGISTRY.register(
    Task(
        name="mbpp",
        train_examples=374,
        kind=TaskKind.GENERATION,
        family="code",
        reader="mbpp",
        splits={split: EN for split in ("train", "dev", "test", "prompt")},
        metric="pass_at_k",
        files={split: ("mbpp/mbpp.jsonl", "mbpp.jsonl") for split in MBPP_SPLITS},
        source=hub("google-research-datasets/mbpp", "full", {"all": ("train", "validation", "test", "prompt")},
                   write="mbpp-jsonl", verified="file names under full/ not seen",
                   notes=("the four hub splits are one release file (mbpp.jsonl), split by task id",)),
        description="MBPP: short problem statements → Python functions checked by three assert tests.",
        extra={"code_language": "python", "task_id_ranges": MBPP_SPLITS},
    )
)

HUMANEVAL = REGISTRY.register(
    Task(
        name="humaneval",
        kind=TaskKind.GENERATION,
        family="code",
        reader="humaneval",
        splits={"test": EN},
        metric="pass_at_k",
        files={
            "test": (
                "humaneval/data/HumanEval.jsonl.gz",
                "data/HumanEval.jsonl.gz",
                "HumanEval.jsonl.gz",
                "HumanEval.jsonl",
            )
        },
        source=hub("openai/openai_humaneval", "openai_humaneval", {"test": ("test",)}, write="jsonl-rows",
                   path="humaneval/HumanEval.jsonl", verified="file names under openai_humaneval/ not seen"),
        description="HumanEval: 164 Python signatures with docstrings, scored by unit tests (evaluation only).",
        extra={"code_language": "python"},
    )
)

CODESEARCHNET = REGISTRY.register(
    Task(
        name="codesearchnet",
        train_examples=250_000,
        kind=TaskKind.RETRIEVAL,
        family="code",
        reader="codesearchnet",
        splits={split: CSN_LANGS for split in ("train", "dev", "test")},
        metric="mrr",
        # The original release: {lang}/final/jsonl/{train,valid,test}/{lang}_{split}_{n}.jsonl.gz shards.
        files={
            "train": ("{lang}/final/jsonl/train/{lang}_train_*.jsonl.gz", "{lang}/final/jsonl/train/{lang}_train_*.jsonl"),
            "dev": ("{lang}/final/jsonl/valid/{lang}_valid_*.jsonl.gz", "{lang}/final/jsonl/valid/{lang}_valid_*.jsonl"),
            "test": ("{lang}/final/jsonl/test/{lang}_test_*.jsonl.gz", "{lang}/final/jsonl/test/{lang}_test_*.jsonl"),
        },
        source=TaskSource({"*": Unavailable(
            "the hub repository holds a script and zips; fetch codesearchnet_cxg (CodeXGLUE's "
            "filtered copy) instead")}),
        description="CodeSearchNet: docstring ↔ function in six programming languages (NL → code retrieval).",
    )
)

CODESEARCHNET_CXG = REGISTRY.register(
    Task(
        name="codesearchnet_cxg",
        train_examples=250_000,
        kind=TaskKind.RETRIEVAL,
        family="code",
        reader="codesearchnet",
        splits={split: CSN_LANGS for split in ("train", "dev", "test")},
        metric="mrr",
        files={
            "train": ("code-to-text/dataset/{lang}/train.jsonl",),
            "dev": ("code-to-text/dataset/{lang}/valid.jsonl",),
            "test": ("code-to-text/dataset/{lang}/test.jsonl",),
        },
        source=hub("google/code_x_glue_ct_code_to_text", "{lang}", TRAIN_DEV_TEST, write="jsonl-rows",
                   verified="file names under {lang}/ not seen"),
        description="CodeSearchNet as filtered by CodeXGLUE (code-to-text), six programming languages.",
    )
)

MCONALA = REGISTRY.register(
    Task(
        name="mconala",
        kind=TaskKind.GENERATION,
        family="code",
        reader="conala_json",
        splits={"test": MCONALA_LANGS},
        metric="code_generation",
        files={"test": ("mconala/{lang}_test.json", "dataset/test/{lang}_test.json", "{lang}_test.json")},
        source=hub("neulab/mconala", "{lang}", {"test": ("test",)}, revision="refs/convert/parquet",
                   write="json-array-rows", verified="export path not seen"),
        description="MCoNaLa: Spanish, Japanese and Russian intents → Python (zero-shot evaluation only).",
        extra={"code_language": "python"},
    )
)

CODE_TASKS = tuple(t.name for t in REGISTRY if t.family == "code")
