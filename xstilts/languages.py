"""Language codes: XTREME names languages by ISO 639-1; LASER's Tatoeba files by ISO 639-3."""

from __future__ import annotations

from xstilts.errors import ConfigError

# ISO 639-1 (as XTREME uses) → the ISO 639-3 code in LASER's tatoeba.{xxx}-eng.{xxx} file names.
TATOEBA_ISO3 = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin",
    "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz",
    "ko": "kor", "ml": "mal", "mr": "mar", "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie",
    "zh": "cmn", "en": "eng",
}  # fmt: skip
ISO3_TO_ISO1 = {v: k for k, v in TATOEBA_ISO3.items()}


def iso3(lang: str) -> str:
    try:
        return TATOEBA_ISO3[lang]
    except KeyError:
        raise ConfigError(f"no ISO 639-3 Tatoeba code known for language {lang!r}") from None
