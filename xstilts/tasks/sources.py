"""Where a task's data can be fetched from, declared on the task itself (``Task.source``): a hub
dataset (parquet), a release archive, or nowhere (with the reason).

Read by ``xstilts data get`` and the hub loaders (:mod:`xstilts.data.fetch`,
:mod:`xstilts.data.hub`, :mod:`xstilts.data.nlu_readers`, :mod:`xstilts.data.code_readers`).
The hub facts on each task were checked against stored copies of the dataset cards, the
repositories' commits ("Convert dataset to Parquet", "Add <config> data files") and the former
loading scripts in ``huggingface/datasets`` (2026-12-03); ``verified`` on a source says what was
not seen. Parquet files are looked up under ``FOLDER/`` in the three layouts the hub uses
(``FOLDER/{split}-00000-of-00001.parquet`` on a repository's main branch,
``FOLDER/{split}/0000.parquet`` in the ``refs/convert/parquet`` export, and the older
``FOLDER/NAME-{split}.parquet``), so a repository that moves between them still resolves.
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


def _fill(template: str, lang: str) -> str:
    return template.format(
        lang=lang, lang3=TATOEBA_ISO3.get(lang, lang), Name=UDPOS_NAMES.get(lang, lang)
    )


@dataclass(frozen=True)
class HubTable:
    """One hub dataset as parquet files: ``repo`` at ``revision``; ``config`` (a template with
    ``{lang}``, ``{lang3}``, ``{Name}``) names the folder the split files live in, unless
    ``folder`` says otherwise (a default config's files sit under ``data/`` or
    ``plain_text/``); ``splits`` maps our split onto the hub's split names (several: ANLI's
    rounds; ``all``: every hub split makes one file).

    How rows become files: ``write`` names the writer of :mod:`xstilts.data.fetch` (default:
    the kind's conversion for the targets), ``path`` where the file goes (default: the task's
    first file pattern of the split). For the targets' conversion, ``columns`` maps an example
    field (``text_a``, ``label``, ``tokens``, ``tags``, ``id``, ``question``, ``context``,
    ``answers``, ``title``, ``source``, ``target``) to the hub column, ``label_names`` names
    integer labels when the parquet metadata does not, and ``id_prefix`` keeps only the rows of
    a language whose ids start with it (TyDiQA keeps every language in one config).
    """

    repo: str
    config: str | None
    splits: Mapping[str, tuple[str, ...]]
    folder: str | None = None
    revision: str = "main"
    languages: tuple[str, ...] | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    label_names: tuple[str, ...] | None = None
    id_prefix: Mapping[str, str] = field(default_factory=dict)
    write: str | None = None
    path: str | None = None
    verified: str = ""

    def config_for(self, lang: str) -> str | None:
        return None if self.config is None else _fill(self.config, lang)

    def folder_for(self, lang: str) -> str:
        folder = self.folder if self.folder is not None else self.config
        assert folder is not None, self.repo
        return _fill(folder, lang)

    def hub_splits(self, split: str) -> tuple[str, ...] | None:
        return self.splits.get(split) or self.splits.get("all")

    def describe(self, lang: str, hub_split: str) -> str:
        config = self.config_for(lang)
        return f"hub:{self.repo}" + (f"/{config}" if config else "") + f"[{hub_split}]"


@dataclass(frozen=True)
class ReleaseArchive:
    """Files from an official release: ``url`` (with ``{lang}``, ``{name}``) per ``names`` of
    a split; an archive (``.tar.bz2``, ``.tar.gz``, ``.zip``) is unpacked into the data folder
    (``members``: only these of its files). ``files``: plain files, each fetched as
    ``{url}/{file}`` into ``into/``."""

    url: str
    names: Mapping[str, str] = field(default_factory=dict)
    into: str = ""
    files: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    languages: tuple[str, ...] | None = None
    verified: str = ""


@dataclass(frozen=True)
class Unavailable:
    """A task (or split) that cannot be fetched, and why."""

    reason: str


Source = HubTable | ReleaseArchive | Unavailable


@dataclass(frozen=True)
class TaskSource:
    """A task's sources by split (``"*"``: every split). ``notes`` say what differs from the
    files XTREME's own download gives."""

    by_split: Mapping[str, Source]
    notes: tuple[str, ...] = ()

    def for_split(self, split: str) -> Source | None:
        return self.by_split.get(split, self.by_split.get("*"))

    @property
    def hub_repo(self) -> str | None:
        """The hub dataset most of the task comes from (what ``Task.hub`` reports)."""
        for source in (self.by_split.get("test"), self.by_split.get("*"), *self.by_split.values()):
            if isinstance(source, HubTable):
                return source.repo
        return None


def hub(repo: str, config: str | None, splits: Mapping[str, tuple[str, ...]], **kwargs) -> TaskSource:
    """The common case: every split of a task from one hub dataset."""
    notes = tuple(kwargs.pop("notes", ()))
    return TaskSource({"*": HubTable(repo, config, splits, **kwargs)}, notes=notes)


# Split maps used by many tasks.
TRAIN_DEV_TEST = {"train": ("train",), "dev": ("validation",), "test": ("test",)}
TRAIN_DEV = {"train": ("train",), "dev": ("validation",)}
QA_COLUMNS = {"id": "id", "question": "question", "context": "context", "answers": "answers", "title": "title"}

# SQuAD v1.1: an intermediate task, and the English training data of XQuAD and MLQA.
SQUAD_V1 = HubTable(
    "rajpurkar/squad", None, TRAIN_DEV, folder="plain_text", write="squad-json",
    verified="file names under plain_text/ not seen",
)
