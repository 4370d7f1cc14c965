from xstilts.models.tiny import build_tiny_model


def test_tiny_model_roundtrip(tmp_path):
    model, tok = build_tiny_model(tmp_path)
    enc = tok(["The fox jumps.", "敏捷的棕色狐狸"], ["Der Fuchs.", "狐狸"], padding=True, return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    assert ids[0] == tok.bos_token_id and tok.eos_token_id in ids
    assert tok.unk_token_id not in enc["input_ids"][1].tolist()
    out = model(**{k: v for k, v in enc.items() if k != "token_type_ids"})
    assert out.last_hidden_state.shape[-1] == 32
    from transformers import AutoModel, AutoTokenizer

    again = AutoModel.from_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    assert tok2("hello world")["input_ids"] == tok("hello world")["input_ids"]
    assert again.config.hidden_size == 32


def test_tiny_tokenizer_is_the_same_in_every_process():
    """The Unigram trainer's scores vary between processes; the builder makes ids deterministic."""
    import subprocess
    import sys

    code = (
        "from xstilts.models.tiny import build_tiny_tokenizer as b;"
        "t=b(extra_text=['hello world, Grüße', '北京是中国的首都。']);"
        "print(t.backend_tokenizer.to_str())"
    )
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(3)}
    assert len(outs) == 1
