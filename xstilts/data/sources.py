"""Where each task's data can be fetched from: a hub dataset (parquet), a release archive, or
nowhere (with the reason). ``xstilts data get`` (:mod:`xstilts.data.fetch`) reads this table.

The facts below were checked against stored copies of the dataset cards, the repositories'
commits ("Convert dataset to Parquet", "Add <config> data files") and the former loading
scripts in ``huggingface/datasets`` (2026-12-03); ``verified`` on a source says what was not
seen. Parquet files are looked up under ``DIR/`` in the three layouts the hub uses
(``DIR/{split}-00000-of-00001.parquet`` on a repository's main branch,
``DIR/{split}/0000.parquet`` in the ``refs/convert/parquet`` export, and the older
``DIR/NAME-{split}.parquet``), so a repository that moves between them still resolves.

Rows are converted by the hub conversions the loaders already have (``xstilts.data.hub`` for
the XTREME targets, ``xstilts.data.nlu_readers`` for the NLU tasks) or kept as they are where
the hub keeps the release's field names (the code tasks, CosmosQA, CommonsenseQA, HellaSwag),
then written in a layout the local readers read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from xstilts.languages import TATOEBA_ISO3

# XTREME's UDPOS languages as google/xtreme names its configs (udpos.<Name>, from its card).
UDPOS_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh", "ko": "Korean",
    "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip


@dataclass(frozen=True)
class HubTable:
    """One hub dataset as parquet files: ``repo`` at ``revision``; ``config`` (a template with
    ``{lang}``, ``{lang3}``, ``{Name}``) names the folder the split files live in, unless
    ``folder`` says otherwise (a default config's files sit under ``data/`` or
    ``plain_text/``); ``splits`` maps our split onto the hub's split names (several: ANLI's
    rounds); ``languages`` limits which of the task's languages the copy has."""

    repo: str
    config: str | None
    splits: Mapping[str, tuple[str, ...]]
    folder: str | None = None
    revision: str = "main"
    languages: tuple[str, ...] | None = None
    verified: str = ""

    def config_for(self, lang: str) -> str | None:
        if self.config is None:
            return None
        return self.config.format(
            lang=lang, lang3=TATOEBA_ISO3.get(lang, lang), Name=UDPOS_NAMES.get(lang, lang)
        )

    def folder_for(self, lang: str) -> str:
        folder = self.folder if self.folder is not None else self.config
        assert folder is not None, self.repo
        return folder.format(
            lang=lang, lang3=TATOEBA_ISO3.get(lang, lang), Name=UDPOS_NAMES.get(lang, lang)
        )

    def describe(self, lang: str, hub_split: str) -> str:
        config = self.config_for(lang)
        return f"hub:{self.repo}" + (f"/{config}" if config else "") + f"[{hub_split}]"


@dataclass(frozen=True)
class ReleaseArchive:
    """Files from an official release: ``url`` (with ``{lang}``, ``{name}``) per ``names`` of
    a split; an archive (``.tar.bz2``, ``.tar.gz``, ``.zip``) is unpacked under ``into``."""

    url: str
    names: Mapping[str, str]
    into: str
    languages: tuple[str, ...] | None = None
    files: tuple[str, ...] = ()  # plain files (no archive): each is fetched as {url}/{file}
    members: tuple[str, ...] = ()  # the archive's files to keep (default: all)
    verified: str = ""


@dataclass(frozen=True)
class Unavailable:
    """A task (or split) that ``data get`` cannot fetch, and why."""

    reason: str


Source = HubTable | ReleaseArchive | Unavailable

_DEV_TEST = {"train": ("train",), "dev": ("validation",), "test": ("test",)}
_SQUAD_V1 = HubTable(
    "rajpurkar/squad", None, {"train": ("train",), "dev": ("validation",)}, folder="plain_text",
    verified="file names under plain_text/ not seen",
)


@dataclass(frozen=True)
class TaskSource:
    """A task's sources by split (``"*"``: every split). ``notes`` say what differs from the
    files XTREME's own download gives."""

    by_split: Mapping[str, Source]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def for_split(self, split: str) -> Source | None:
        return self.by_split.get(split, self.by_split.get("*"))


SOURCES: dict[str, TaskSource] = {
    # --- XTREME targets ---------------------------------------------------------------------
    "xnli": TaskSource(
        {"*": HubTable("facebook/xnli", "{lang}", _DEV_TEST,
                       verified="layout {lang}/{split}-00000-of-00001.parquet seen for en")},
        notes=("the hub's test split carries the labels XTREME's download withholds",),
    ),
    "pawsx": TaskSource(
        {"*": HubTable("google-research-datasets/paws-x", "{lang}", _DEV_TEST,
                       verified="file names under {lang}/ not seen")},
        notes=("pairs whose label the release replaced with -1 are left out",),
    ),
    "udpos": TaskSource(
        {"*": HubTable("google/xtreme", "udpos.{Name}", _DEV_TEST,
                       verified="udpos.English/train-* seen; Kazakh has no dev, tl/th/yo test only")},
        notes=("google/xtreme merges every UD 2.5 treebank of a language, as XTREME does",),
    ),
    "panx": TaskSource(
        {"*": HubTable("google/xtreme", "PAN-X.{lang}", _DEV_TEST,
                       verified="PAN-X.de/{split}-00000-of-00001.parquet seen")},
        notes=("the hub's test split carries the labels XTREME's download withholds",),
    ),
    "xquad": TaskSource(
        {
            "train": _SQUAD_V1,
            "dev": _SQUAD_V1,
            "test": HubTable("google/xquad", "xquad.{lang}", {"test": ("validation",)},
                             verified="xquad.{lang}/validation-00000-of-00001.parquet seen"),
        }
    ),
    "mlqa": TaskSource(
        {
            "train": _SQUAD_V1,
            "dev": HubTable("google/xtreme", "MLQA.{lang}.{lang}", {"dev": ("validation",)}),
            "test": HubTable("google/xtreme", "MLQA.{lang}.{lang}", {"test": ("test",)}),
        },
        notes=("facebook/mlqa holds only a loading script; google/xtreme has the parquet copy",),
    ),
    "tydiqa": TaskSource(
        {"*": HubTable("google-research-datasets/tydiqa", "secondary_task",
                       {"train": ("train",), "test": ("validation",)},
                       verified="secondary_task file names not seen")},
        notes=("one config holds every language; rows are kept by their id prefix (arabic-...)",),
    ),
    "bucc2018": TaskSource(
        {"*": ReleaseArchive(
            "https://comparable.limsi.fr/bucc2018/bucc2018-{lang}-en.{name}-gold.tar.bz2",
            {"dev": "sample", "test": "training"}, into="bucc2018",
            verified="archive names from the former google/xtreme loading script")},
        notes=("the hub copies (google/xtreme bucc18.*) keep only the gold pairs, without the "
               "distractor sentences that make mining hard, so the release archives are used",),
    ),
    "tatoeba": TaskSource(
        {"*": HubTable("google/xtreme", "tatoeba.{lang3}", {"test": ("validation",)},
                       verified="tatoeba.deu/validation-00000-of-00001.parquet seen")},
        notes=("source_sentence is the non-English side, target_sentence English (line i <-> i)",),
    ),
    "xcopa": TaskSource(
        {
            "train": ReleaseArchive(
                "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/COPA.zip",
                {"train": "COPA"}, into="COPA", members=("COPA/train.jsonl",),
                verified="SuperGLUE's COPA release (COPA/train.jsonl, val.jsonl, test.jsonl)"),
            "dev": HubTable("cambridgeltl/xcopa", "{lang}", {"dev": ("validation",)},
                            verified="config folders {lang}/ seen, file names not"),
            "test": HubTable("cambridgeltl/xcopa", "{lang}", {"test": ("test",)},
                             verified="config folders {lang}/ seen, file names not"),
        },
        notes=("English training is SuperGLUE's COPA (400 examples); XCOPA itself has only "
               "validation (100) and test (500) per language",),
    ),
    # --- the paper's intermediate tasks -----------------------------------------------------
    "mnli": TaskSource(
        {"*": HubTable("nyu-mll/multi_nli", None,
                       {"train": ("train",), "dev": ("validation_matched",)}, folder="data")}
    ),
    "snli": TaskSource(
        {"*": HubTable("stanfordnlp/snli", None,
                       {"train": ("train",), "dev": ("validation",), "test": ("test",)},
                       folder="plain_text", verified="folder plain_text/ not seen")}
    ),
    "anli": TaskSource(
        {"*": HubTable("facebook/anli", None,
                       {s: tuple(f"{s}_r{r}" for r in (1, 2, 3)) for s in ("train", "dev", "test")},
                       folder="plain_text", verified="folder plain_text/ not seen")}
    ),
    "qqp": TaskSource(
        {"*": HubTable("nyu-mll/glue", "qqp", {"train": ("train",), "dev": ("validation",)})}
    ),
    "squad_v1": TaskSource({"*": _SQUAD_V1}),
    "squad_v2": TaskSource(
        {"*": HubTable("rajpurkar/squad_v2", None, {"train": ("train",), "dev": ("validation",)},
                       folder="squad_v2", verified="folder squad_v2/ not seen")}
    ),
    "hellaswag": TaskSource(
        {"*": HubTable("Rowan/hellaswag", None, {"train": ("train",), "dev": ("validation",)},
                       folder="default", revision="refs/convert/parquet",
                       verified="the repository holds a script; its parquet export is read")}
    ),
    "cosmosqa": TaskSource(
        {"*": HubTable("allenai/cosmos_qa", None, {"train": ("train",), "dev": ("validation",)},
                       folder="default", revision="refs/convert/parquet",
                       verified="the repository holds a script; export path not seen")}
    ),
    "commonsenseqa": TaskSource(
        {"*": HubTable("tau/commonsense_qa", None, {"train": ("train",), "dev": ("validation",)},
                       folder="data", verified="file names under data/ not seen")}
    ),
    "ccg": TaskSource(
        {"*": Unavailable("CCGbank is licensed by the LDC (LDC2005T13): no public copy")}
    ),
    # --- code tasks -------------------------------------------------------------------------
    "conala": TaskSource(
        {"*": HubTable("neulab/conala", "curated", {"train": ("train",), "test": ("test",)},
                       revision="refs/convert/parquet")}
    ),
    "conala_mined": TaskSource(
        {"*": HubTable("neulab/conala", "mined", {"train": ("train",)},
                       revision="refs/convert/parquet")}
    ),
    "mconala": TaskSource(
        {"*": HubTable("neulab/mconala", "{lang}", {"test": ("test",)},
                       revision="refs/convert/parquet", verified="export path not seen")}
    ),
    "django": TaskSource(
        {"*": ReleaseArchive(
            "https://raw.githubusercontent.com/odashi/ase15-django-dataset/master/django",
            {}, into="django", files=("all.anno", "all.code"),
            verified="the ASE'15 release repository; no hub copy")}
    ),
    "concode": TaskSource(
        {"*": HubTable("google/code_x_glue_tc_text_to_code", None,
                       {"train": ("train",), "dev": ("validation",), "test": ("test",)},
                       folder="data")},
        notes=("CodeXGLUE's test split has no references (empty code); quality is read on dev",),
    ),
    "mbpp": TaskSource(
        {"*": HubTable("google-research-datasets/mbpp", "full",
                       {"all": ("train", "validation", "test", "prompt")},
                       verified="file names under full/ not seen")},
        notes=("the four hub splits are one release file (mbpp.jsonl), split by task id",),
    ),
    "humaneval": TaskSource(
        {"*": HubTable("openai/openai_humaneval", "openai_humaneval", {"test": ("test",)},
                       verified="file names under openai_humaneval/ not seen")}
    ),
    "codesearchnet": TaskSource(
        {"*": Unavailable("the hub repository holds a script and zips; fetch codesearchnet_cxg "
                          "(CodeXGLUE's filtered copy) instead")}
    ),
    "codesearchnet_cxg": TaskSource(
        {"*": HubTable("google/code_x_glue_ct_code_to_text", "{lang}", _DEV_TEST,
                       verified="file names under {lang}/ not seen")}
    ),
}

# What `data get xtreme` fetches: the nine targets.
XTREME_GROUP = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")


def task_source(name: str) -> TaskSource | None:
    return SOURCES.get(name)
