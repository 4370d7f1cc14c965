"""The ways an encoder learns code: whitespace round trip, generate (learns and decodes, greedy and
beam), contrastive, match, infill (masks on code only), and the formulation builders through the
training loop. Tiny random XLM-R models; seconds each."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import shared_file
from xstilts.data.examples import GenerationExample
from xstilts.evaluation.code_quality import evaluate_generation, evaluate_retrieval
from xstilts.models.codegen import (
    CodeContrastive,
    CodeGenerator,
    ContrastiveCollator,
    GenerationCollator,
    GenerationFeaturizer,
    InfillCollator,
    WhitespaceCodec,
    build_shortlist,
    contrastive_features,
    generate_code,
    infill_features,
    match_features,
    tokenizer_keeps_whitespace,
)  # fmt: skip
from xstilts.models.tiny import build_tiny_model, build_tiny_tokenizer

MULTILINE = [
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "class A:\n\n    def __init__(self):\n\tself.x = {'k':  [1, 2]}  # two  spaces\n",
    "s = '<@n> is not a newline'  \n  \nprint(s)",
    "    indented_first_line()\r\nx=1",
]


def _collapsing(tokenizer):
    """The tiny tokenizer with XLM-R's whitespace normalisation (runs of whitespace -> one space)."""
    from tokenizers import Regex, normalizers

    tokenizer.backend_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    )
    return tokenizer


def _roundtrip(tokenizer, codec, code):
    ids = tokenizer(codec.encode(code), add_special_tokens=False)["input_ids"]
    return codec.decode(tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))


def test_whitespace_codec_round_trips_multiline_python():
    tok = _collapsing(build_tiny_tokenizer(extra_text=MULTILINE))
    assert not tokenizer_keeps_whitespace(tok)
    plain = WhitespaceCodec(enabled=False)
    assert _roundtrip(tok, plain, MULTILINE[0]) != MULTILINE[0]  # newlines/indentation are lost
    codec = WhitespaceCodec.for_tokenizer(tok)
    assert codec.enabled
    for code in MULTILINE:
        assert _roundtrip(tok, codec, code) == code


def test_whitespace_codec_on_humaneval_solutions(shared_data):
    import gzip

    path = shared_file("humaneval/data/HumanEval.jsonl.gz")
    with gzip.open(path, "rt") as f:
        codes = [json.loads(line)["canonical_solution"] for line in f][:40]
    tok = _collapsing(build_tiny_tokenizer(extra_text=codes))
    codec = WhitespaceCodec(enabled=True)
    assert all(_roundtrip(tok, codec, c) == c for c in codes)


def _toy_examples(n=6):
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight"][:n]
    return [GenerationExample(id=str(i), source=f"add {w} to x", target=f"x = x + {w}\nprint(x)") for i, w in enumerate(words)]


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return build_tiny_model(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)


def test_generate_learns_and_decodes_greedy_and_beam(tiny):
    encoder, tok = tiny
    examples = _toy_examples()
    codec = WhitespaceCodec(enabled=True)
    fz = GenerationFeaturizer(tok, codec, 32, 32)
    shortlist = build_shortlist(tok, fz.target_ids([e.target for e in examples]))
    model = CodeGenerator(encoder, shortlist, num_layers=2, dropout=0.0)
    assert model.encoder is encoder
    assert len(CodeGenerator(encoder, shortlist).decoder.layers) == 6  # the default depth
    before = evaluate_generation(model, fz, examples)
    collate = GenerationCollator(tok.pad_token_id)
    batch = collate(fz.features(examples, shortlist))
    assert batch["decoder_input_ids"][0, 0].item() == 1 and (batch["labels"] == 2).sum() == len(examples)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = model(**batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    after = evaluate_generation(model, fz, examples)
    assert before["exact_match"] == 0.0 and after["exact_match"] == 100.0
    assert after["bleu"] > before["bleu"] and after["codebleu"] == pytest.approx(100.0)
    beam = generate_code(model, fz, [e.source for e in examples], num_beams=3)
    assert beam == [e.target for e in examples]  # newlines come back through the codec


def test_contrastive_in_batch_negatives(tiny):
    encoder, tok = tiny
    examples = _toy_examples(8)
    codec = WhitespaceCodec.for_tokenizer(tok)
    model = CodeContrastive(encoder, temperature=0.1)
    batch = ContrastiveCollator(tok.pad_token_id)(contrastive_features(examples, tok, codec))
    out = model(**batch)
    assert out["logits"].shape == (8, 8)
    # A constant scorer's InfoNCE is log(8); the random encoder sits near it.
    assert abs(out["loss"].item() - torch.log(torch.tensor(8.0)).item()) < 1.5
    before = evaluate_retrieval(model, tok, codec, examples)["mrr"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = model(**batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.2
    after = evaluate_retrieval(model, tok, codec, examples)["mrr"]
    assert after == pytest.approx(100.0) and before < 100.0
    with pytest.raises(Exception, match="temperature"):
        CodeContrastive(encoder, temperature=0)


def test_match_samples_negatives(tiny):
    encoder, tok = tiny
    examples = _toy_examples(5)
    feats = match_features(examples, tok, WhitespaceCodec(True), negatives=2, seed=3)
    assert [f["labels"] for f in feats] == [1, 0, 0] * 5
    again = match_features(examples, tok, WhitespaceCodec(True), negatives=2, seed=3)
    assert feats == again  # seeded
    from xstilts.models.codegen import MatchCollator, build_match_model

    model = build_match_model(encoder)
    assert model.encoder is encoder
    out = model(**MatchCollator(tok.pad_token_id)(feats))
    assert out.logits.shape == (15, 2) and torch.isfinite(out.loss)


def test_infill_masks_code_tokens_only(tiny):
    encoder, tok = tiny
    examples = _toy_examples(6)
    feats = infill_features(examples, tok, WhitespaceCodec(True))
    torch.manual_seed(0)
    batch = InfillCollator(tok, mask_probability=0.5)(feats)
    code_mask = torch.zeros_like(batch["labels"], dtype=torch.bool)
    for r, f in enumerate(feats):
        code_mask[r, : len(f["code_mask"])] = torch.tensor(f["code_mask"], dtype=torch.bool)
        # The NL part comes first and has no code positions.
        nl_len = len(tok(examples[r].source)["input_ids"])
        assert not any(f["code_mask"][:nl_len])
    masked = batch["labels"] != -100
    assert masked.any(dim=1).all()
    assert not (masked & ~code_mask).any()
    from xstilts.models.codegen import CodeInfill

    model = CodeInfill(encoder)
    assert model.encoder is encoder
    loss = model(**batch)["loss"]
    loss.backward()
    assert encoder.embeddings.word_embeddings.weight.grad is not None


@pytest.mark.parametrize("formulation", ["generate", "contrastive", "match", "infill"])
def test_formulations_train_with_the_loop(tiny, tmp_path, formulation):
    from xstilts.tasks import get_task
    from xstilts.train.formulations import FormulationInput, available_formulations, get_builder
    from xstilts.train.loop import train
    from xstilts.train.train_config import TrainConfig

    assert {"generate", "contrastive", "match", "infill"} <= set(available_formulations())
    encoder, tok = tiny
    examples = _toy_examples(8)
    name, builder = get_builder(get_task("conala"), formulation)
    part = builder(FormulationInput(
        task=get_task("conala"), encoder=encoder, tokenizer=tok, train_examples=examples,
        dev_examples=examples[:4], settings={"max_length": 32, "max_target_length": 32, "decoder_layers": 1},
    ))  # fmt: skip
    assert part.model.encoder is encoder
    if formulation == "generate":  # the whole encoder trains, as with an NLU task, unless asked
        assert not part.info["encoder_embeddings_frozen"] and part.info["copy_attention"]
        assert encoder.get_input_embeddings().weight.requires_grad
        frozen = builder(FormulationInput(
            task=get_task("conala"), encoder=encoder, tokenizer=tok, train_examples=examples, dev_examples=None,
            settings={"max_length": 32, "max_target_length": 32, "decoder_layers": 1, "freeze_embeddings": True},
        ))  # fmt: skip
        assert frozen.info["encoder_embeddings_frozen"] and not encoder.get_input_embeddings().weight.requires_grad
        encoder.get_input_embeddings().weight.requires_grad_(True)
    config = TrainConfig(learning_rate=1e-3, batch_size=4, max_steps=3, mixed_precision="no", progress=False,
                         tensorboard=False, cpu=True, log_every=1)  # fmt: skip
    json.dumps(part.info)  # the pipeline writes it to the run's metrics
    config.metric_for_best = part.info["metric_for_best"]
    result = train(part.model, part.train_features, part.collate, config, eval_fn=part.evaluate,
                   out_dir=tmp_path / formulation)  # fmt: skip
    assert result.eval_history
    scores = part.evaluate(part.model)
    expected = {
        "generate": {"loss", "exact_match", "bleu", "smoothed_bleu4", "codebleu"},
        "contrastive": {"loss", "mrr"},
        "match": {"loss", "accuracy"},
        "infill": {"loss"},
    }[formulation]
    assert set(scores) == expected
    if formulation == "infill":  # fixed masks: the dev loss is a function of the weights only
        rng = torch.get_rng_state()
        assert part.evaluate(part.model) == scores
        assert torch.equal(torch.get_rng_state(), rng)  # and training randomness is untouched


def test_generation_quality_includes_pass_at_1_by_execution(tiny):
    from xstilts.evaluation.code_quality import execution_pass_at_1
    from xstilts.evaluation.execution import Sandbox, SandboxConfig

    problems = [
        GenerationExample(id="1", source="double", target="def f(x):\n    return 2 * x", tests="assert f(2) == 4\n",
                          prompt="double x\nassert f(2) == 4"),
        GenerationExample(id="2", source="triple", target="def g(x):\n    return 3 * x", tests="assert g(1) == 3\n"),
    ]  # fmt: skip
    box = Sandbox(SandboxConfig(timeout_s=2))
    assert execution_pass_at_1(problems, ["def f(x):\n    return x + x", "def g(x):\n    return x"], sandbox=box) == 50.0
    encoder, tok = tiny
    codec = WhitespaceCodec(True)
    fz = GenerationFeaturizer(tok, codec, 32, 16)
    assert fz.source_text(problems[0]) == "double x\nassert f(2) == 4" and fz.source_text(problems[1]) == "triple"
    model = CodeGenerator(encoder, build_shortlist(tok, fz.target_ids([p.target for p in problems])), num_layers=1)
    scores = evaluate_generation(model, fz, problems, sandbox=box)
    assert scores["pass@1"] == 0.0  # an untrained decoder writes no working function


def test_mconala_probe_per_language(tiny, shared_data):
    from xstilts.evaluation.code_quality import evaluate_code_task

    shared_file("mconala/es_test.json")
    encoder, tok = tiny
    fz = GenerationFeaturizer(tok, WhitespaceCodec(True), 32, 8)
    model = CodeGenerator(encoder, build_shortlist(tok, [[5, 6, 7]]), num_layers=1)
    scores = evaluate_code_task(model, fz, "mconala", shared_data, limit=3)
    assert "es" in scores and "ru" in scores and "ja" not in scores  # ja is not in the shared copy
    assert scores["es"]["examples"] == 3.0
    assert set(scores["es"]) >= {"exact_match", "bleu", "smoothed_bleu4", "codebleu"}


def test_source_length_is_capped_by_the_encoder(tiny):
    from xstilts.tasks import get_task
    from xstilts.train.formulations import FormulationInput, get_builder

    encoder, tok = tiny  # 130 positions: 128 tokens
    long = [GenerationExample(id=str(i), source=" ".join(["word"] * 400), target="x = 1") for i in range(2)]
    for formulation in ("generate", "contrastive", "match", "infill"):
        _, builder = get_builder(get_task("django"), formulation)
        part = builder(FormulationInput(task=get_task("django"), encoder=encoder, tokenizer=tok,
                                        train_examples=long, dev_examples=None, settings={"max_length": 512}))  # fmt: skip
        assert max(len(f["input_ids"]) for f in part.train_features) <= 128
        part.model(**part.collate(part.train_features[:2]))  # would raise an index error past 128


def test_decoder_trains_at_its_own_learning_rate(tiny):
    from xstilts.train.loop import parameter_groups

    encoder, tok = tiny
    model = CodeGenerator(encoder, [1, 0, 2, 3, 5], num_layers=1, decoder_lr_scale=20.0)
    groups = parameter_groups(model, weight_decay=0.01, lr=1e-5)
    scaled = [g for g in groups if "lr" in g]
    assert scaled and all(g["lr"] == pytest.approx(2e-4) for g in scaled)
    scaled_ids = {id(p) for g in scaled for p in g["params"]}
    decoder_side = (model.decoder, model.positions, model.embed_norm, model.token_embeddings, model.copy_key,
                    model.copy_gate)
    assert scaled_ids == {id(p) for m in decoder_side for p in m.parameters()}
    # The decoder's own embedding table starts as a copy of the encoder's rows for the shortlist.
    assert torch.equal(model.token_embeddings.weight[4], encoder.get_input_embeddings().weight[5])
    assert model.token_embeddings.weight.data_ptr() != encoder.get_input_embeddings().weight.data_ptr()
    tied = CodeGenerator(encoder, [1, 0, 2, 3, 5], num_layers=1, embeddings="tied")
    assert tied.token_embeddings is None and tied._short_embeddings().requires_grad
    with pytest.raises(Exception, match="copy"):
        CodeGenerator(encoder, [1, 0, 2, 3, 5], num_layers=1, embeddings="shared")
    assert not scaled_ids & {id(p) for p in encoder.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # Without a learning rate (or at scale 1) the groups are the usual two.
    assert len(parameter_groups(model, 0.01)) == 2


def test_copy_attention_mixes_into_a_distribution(tiny):
    """With copy attention the decoder scores are log-probabilities of a mixture (they sum to 1),
    and copy mass lands only on shortlist positions of tokens present in the source."""
    encoder, tok = tiny
    torch.manual_seed(0)
    model = CodeGenerator(encoder, [1, 0, 2, 3, 5, 6, 7, 8], num_layers=1, dropout=0.0).eval()
    src = torch.tensor([[0, 5, 6, 9, 2, 1]])  # bos, two shortlisted tokens, an unlisted one, eos, pad
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    dec = torch.tensor([[1, 4, 5]])
    with torch.no_grad():
        mixed = model(src, mask, dec)["logits"]
        assert torch.allclose(mixed.logsumexp(-1), torch.zeros(1, 3), atol=1e-5)
        model.copy_gate.bias.fill_(-30.0)  # all copy: only source tokens' positions get mass
        copied = model(src, mask, dec)["logits"].exp()
    # source ids 0 (bos) -> position 1, 5 -> 4, 6 -> 5, 9 (not shortlisted) -> unk 3, 2 (eos) -> 2
    assert copied[0, :, [1, 2, 3, 4, 5]].sum(-1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert copied[0, :, [0, 6, 7]].max() < 1e-6  # pad (masked source position) and absent tokens
    plain = CodeGenerator(encoder, [1, 0, 2, 3, 5, 6, 7, 8], num_layers=1, copy_attention=False)
    assert plain.copy_key is None and plain(src, mask, dec)["logits"].shape == (1, 3, 8)
