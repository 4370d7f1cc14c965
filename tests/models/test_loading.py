"""load_encoder: local folders of any AutoModel architecture, catalogue names, offline hub ids."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from xstilts.errors import XstiltsError
from xstilts.models.loading import load_encoder, query_prefix_for, resolve_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from xstilts.models.tiny import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny")
    build_tiny_model(folder)
    return folder


def test_local_xlmr_folder_loads_with_sdpa_and_tokenizer(tiny_dir):
    encoder, tokenizer = load_encoder(tiny_dir)
    assert type(encoder).__name__ == "XLMRobertaModel"
    assert encoder.config._attn_implementation == "sdpa"
    assert not encoder.training
    assert encoder.pooler is not None  # the tiny checkpoint has pooler weights: kept
    ids = tokenizer("Hello world")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id


def test_bert_architecture_with_xlmr_tokenizer_and_no_pooler(tmp_path, tiny_dir):
    """An mBERT/E5-style BertModel with an XLM-R tokenizer: nothing assumes XLM-R. A checkpoint
    without pooler weights loads without a random pooler."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    encoder, tok = load_encoder(tmp_path)
    assert type(encoder).__name__ == "BertModel"
    assert encoder.pooler is None
    batch = tok(["a b c"], return_tensors="pt")
    with torch.no_grad():
        got = encoder(**batch).last_hidden_state
        want = model.eval()(**batch).last_hidden_state
    assert torch.allclose(got, want)


def test_saved_task_model_folder_uses_its_encoder_subfolder(tmp_path, tiny_dir):
    import shutil

    shutil.copytree(tiny_dir, tmp_path / "encoder")
    assert resolve_model(tmp_path).location == str(tmp_path / "encoder")


def test_safetensors_only_and_remote_code_off(tmp_path, tiny_dir, monkeypatch):
    import transformers

    seen: dict = {}
    original = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    load_encoder(tiny_dir)
    assert seen["use_safetensors"] is True
    assert seen["trust_remote_code"] is False


def test_pytorch_bin_only_folder_is_refused(tmp_path, tiny_dir):
    import torch
    from safetensors.torch import load_file

    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((tiny_dir / name).read_bytes())
    torch.save(load_file(str(tiny_dir / "model.safetensors")), tmp_path / "pytorch_model.bin")
    with pytest.raises(XstiltsError, match="could not load encoder"):
        load_encoder(tmp_path)


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_uncached_hub_id_fails_at_once_with_how_to(monkeypatch, variable):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(variable, "1")
    start = time.perf_counter()
    with pytest.raises(XstiltsError) as info:
        load_encoder("xstilts-test-org/no-such-encoder-7f3a")
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert "no-such-encoder-7f3a" in message and "offline" in message
    assert "xstilts model get multilingual-e5-small" in message and "local folder" in message


def test_catalogue_name_without_conversion_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path))
    with pytest.raises(XstiltsError, match="xstilts model get multilingual-e5-small"):
        load_encoder("multilingual-e5-small")


def test_catalogue_name_resolves_under_xstilts_home(tmp_path, monkeypatch, tiny_dir):
    import shutil

    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path))
    target = tmp_path / "models" / "multilingual-e5-small"
    shutil.copytree(tiny_dir, target)
    resolved = resolve_model("multilingual-e5-small")
    assert (resolved.kind, resolved.location) == ("catalogue", str(target))
    assert query_prefix_for("multilingual-e5-small") == "query: "
    (target / "xstilts_source.json").write_text(json.dumps({"model": "intfloat/multilingual-e5-small"}))
    assert query_prefix_for(target) == "query: "
    assert query_prefix_for(tiny_dir) == ""


@pytest.mark.parametrize("bad", ["./no/such/folder", "/definitely/not/here", "a/b/c", "bad name!"])
def test_missing_paths_and_malformed_ids_are_one_line_errors(bad):
    with pytest.raises(XstiltsError, match="no such model folder"):
        resolve_model(bad)


def test_a_file_is_not_a_model_folder(tmp_path):
    file = tmp_path / "weights.bin"
    file.write_text("x")
    with pytest.raises(XstiltsError, match="found a file"):
        resolve_model(file)


def test_cli_model_get_unknown_name_exits_2(capsys):
    from xstilts.cli import main

    assert main(["model", "get", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_cli_model_list_shows_missing_state(tmp_path, monkeypatch, capsys):
    from xstilts.cli import main

    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path))
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert "multilingual-e5-small" in out and "missing (run xstilts model get multilingual-e5-small)" in out
