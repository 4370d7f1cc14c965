"""The three-phase pipeline end to end on small slices of the real UDPOS / PAN-X files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import shared_file  # noqa: E402

from xstilts.errors import ConfigError  # noqa: E402

UDPOS = "udpos/xtreme-format/download/udpos"
PANX = "panx/download/panx"


def head_sentences(src: Path, dst: Path, n: int) -> list[list[str]]:
    """Copy the first ``n`` sentences (blank-line separated) of a token<TAB>tag file."""
    sentences, current = [], []
    for line in src.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
                if len(sentences) == n:
                    break
            continue
        current.append(line)
    if current and len(sentences) < n:
        sentences.append(current)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join("\n".join(s) + "\n\n" for s in sentences), encoding="utf-8")
    return [[line.split("\t")[0] for line in s] for s in sentences]


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """A data folder with UDPOS and PAN-X slices and a tiny XLM-R whose vocabulary covers them."""
    from xstilts.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("world")
    data = root / "data"
    words: list[str] = []
    for name, n in (("train-en", 48), ("dev-en", 12), ("test-en", 10), ("test-fr", 10), ("test-es", 10)):
        words += [" ".join(s) for s in head_sentences(shared_file(f"{UDPOS}/{name}.tsv"), data / "udpos" / f"{name}.tsv", n)]
    for name, n in (("train-en", 48), ("dev-en", 10), ("dev-de", 10)):
        words += [" ".join(s) for s in head_sentences(shared_file(f"{PANX}/{name}.tsv"), data / "panx" / f"{name}.tsv", n)]
    model_dir = root / "tiny"
    build_tiny_model(model_dir, extra_text=words, hidden_size=32, num_layers=2, vocab_size=1500)
    return {"data": data, "model": model_dir, "root": root}


def _cli(args: list[str]) -> int:
    from xstilts.cli import main

    return main(args)


def test_run_udpos_end_to_end_then_rerun_reads(small_world, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--model", str(small_world["model"]), "--target", "udpos", "--data-dir",
            str(small_world["data"]), "--out", str(out), "--seed", "3", "--epochs", "2", "--lr", "1e-3",
            "--batch-size", "8", "--max-length", "64", "--no-progress"]
    assert _cli(args) == 0
    for name in ("config.yaml", "versions.json", "run.log", "metrics.json", "scores.json", "run.json"):
        assert (out / name).is_file(), name
    scores = json.loads((out / "scores.json").read_text())
    langs = scores["tasks"]["udpos"]["languages"]
    assert sorted(langs) == ["en", "es", "fr"]
    for lang, metrics in langs.items():
        assert 0.0 <= metrics["f1"] <= 100.0
    assert scores["tasks"]["udpos"]["score"] == pytest.approx(sum(m["f1"] for m in langs.values()) / 3, abs=0.01)
    # predictions: one tag per word of every test sentence
    pred = (out / "predictions" / "udpos" / "test-fr.tsv").read_text().strip().split("\n\n")
    assert len(pred) == 10
    gold = (out / "labels" / "udpos" / "test-fr.tsv").read_text().strip().split("\n\n")
    assert [len(p.splitlines()) for p in pred] == [len(g.splitlines()) for g in gold]
    metrics = json.loads((out / "metrics.json").read_text())
    train = metrics["phase2"]["train"]
    n_feats = metrics["phase2"]["train_features"]  # long sentences make several windows
    assert metrics["phase2"]["train_examples"] == 48 and n_feats >= 48
    assert train["global_step"] == 2 * -(-n_feats // 8)
    assert metrics["phase2"]["settings"]["learning_rate"] == 1e-3
    assert metrics["phase2"]["settings"]["grad_accum"] == 1
    assert metrics["phase2"]["packed"] is True  # tagging: random batches packed into full rows
    assert train["eval_history"] and "score" in train["eval_history"][0]  # dev-en model selection
    versions = json.loads((out / "versions.json").read_text())["first_start"]
    assert versions["packages"]["torch"] and versions["python"]
    assert (out / "phase2" / "model" / "head.json").is_file()
    assert not (out / "phase2" / "train" / "final").exists()  # the exported model is the one copy kept
    assert (out / "phase2" / "train" / "result.json").is_file()
    # the same command again reads the finished run: no training, same scores
    stamp = (out / "phase2" / "model" / "head.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert _cli(args + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == scores
    assert (out / "phase2" / "model" / "head.safetensors").stat().st_mtime_ns == stamp
    # another config pointed at the finished run dir is refused, not answered with old scores
    i = args.index("--seed")
    assert _cli(args[:i] + ["--seed", "4"] + args[i + 2 :]) == 2
    assert json.loads((out / "scores.json").read_text()) == scores


def test_changed_config_in_unfinished_run_dir_is_refused(small_world, tmp_path):
    from xstilts.study.run_config import load_run_config
    from xstilts.study.rundir import RunDir

    cfg = load_run_config(None, model=str(small_world["model"]), target="udpos",
                          data_dir=str(small_world["data"]), out=str(tmp_path / "r"))
    RunDir(cfg.out).open(json.loads(cfg.model_dump_json()))
    other = cfg.model_copy(update={"seed": 2})
    with pytest.raises(ConfigError, match="differs in: seed"):
        RunDir(cfg.out).open(json.loads(other.model_dump_json()))


def test_phase2_starts_from_phase1_encoder(small_world, tmp_path, monkeypatch):
    """Intermediate PAN-X -> target UDPOS: phase 2's starting weights are the phase-1 encoder's."""
    from safetensors.torch import load_file

    import xstilts.study.pipeline as pipeline_module
    import xstilts.train.loop as loop
    from xstilts.study.pipeline import run_pipeline
    from xstilts.study.run_config import load_run_config

    seen: dict[str, dict] = {}
    real_train = loop.train

    def spy(model, *a, **kw):
        if kw.get("description", "").startswith("phase2"):
            seen["start"] = {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}
            seen["head"] = {k: tuple(v.shape) for k, v in model.head.state_dict().items()}
        return real_train(model, *a, **kw)

    monkeypatch.setattr(pipeline_module, "train", spy)
    cfg = load_run_config(
        None, model=str(small_world["model"]), target="udpos", intermediate="panx",
        data_dir=str(small_world["data"]), out=str(tmp_path / "run"), seed=1, progress=False,
        eval_max_examples=3, languages=["fr"],
        hyperparameters={"intermediate": {"learning_rate": 5e-3, "batch_size": 8, "epochs": 1, "eval_every": 0},
                         "target": {"learning_rate": 1e-3, "batch_size": 8, "grad_accum": 1, "epochs": 1}},
    )
    run = run_pipeline(cfg)
    phase1 = load_file(str(run / "encoder" / "model.safetensors"))
    pretrained = load_file(str(small_world["model"] / "model.safetensors"))
    start = seen["start"]
    compared = 0
    for key, value in phase1.items():
        assert torch.equal(start[key], value), key
        compared += 1
    assert compared >= 10
    # phase 1 really trained the encoder, so equality with it is not equality with the start
    moved = [k for k in phase1 if k in pretrained and not torch.equal(phase1[k], pretrained[k])]
    assert len(moved) > compared // 2
    # a NEW head: UDPOS has 17 labels, PAN-X had 7
    assert seen["head"] == {"classifier.weight": (17, 32), "classifier.bias": (17,)}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["phase2"]["encoder_check"]["tensors_checked"] == compared
    assert metrics["phase1"]["sizes"] == {"panx": 48}
    # phase 1 as phase 2: random batches (jiant's recipe), each packed into one padding-free row
    assert metrics["phase1"]["tasks"]["panx"]["packed"] is True
    assert metrics["phase1"]["planner"]["group_by_length"] is False
    assert json.loads((run / "scores.json").read_text())["tasks"]["udpos"]["languages"].keys() == {"fr"}


def test_encoder_check_fails_loudly(small_world, tmp_path):
    from xstilts.models.loading import load_encoder
    from xstilts.study.pipeline import verify_encoder_matches

    encoder, _ = load_encoder(str(small_world["model"]))
    assert verify_encoder_matches(encoder, small_world["model"])["tensors_checked"] > 10
    with torch.no_grad():
        encoder.embeddings.word_embeddings.weight[0, 0] += 1.0
    with pytest.raises(ConfigError, match="1 differ"):
        verify_encoder_matches(encoder, small_world["model"])
    with pytest.raises(ConfigError, match="no encoder weights"):
        verify_encoder_matches(encoder, tmp_path)


@pytest.mark.parametrize("capped", [False, True])
def test_retrieval_target_skips_fine_tuning(small_world, tmp_path, monkeypatch, capped):
    """Tatoeba goes straight from the (pretrained) encoder to phase 3, whole or capped; its
    embeddings take the target phase's `mixed_precision` (default `auto`)."""
    import xstilts.evaluation.retrieval as retrieval
    from xstilts.study.pipeline import run_pipeline
    from xstilts.study.run_config import load_run_config

    precisions: list[str] = []
    real_embed_layers = retrieval.embed_layers

    def spy(*a, precision="auto", **kw):
        precisions.append(precision)
        return real_embed_layers(*a, precision=precision, **kw)

    monkeypatch.setattr(retrieval, "embed_layers", spy)

    data = tmp_path / "data"
    for side in ("deu", "eng"):
        src = shared_file(f"tatoeba/v1/tatoeba.deu-eng.{side}")
        dst = data / "tatoeba" / "v1" / f"tatoeba.deu-eng.{side}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text("".join(src.read_text(encoding="utf-8").splitlines(keepends=True)[:20]), encoding="utf-8")
    extra = {"eval_max_examples": 5, "hyperparameters": {"target": {"mixed_precision": "no"}}} if capped else {}
    cfg = load_run_config(None, model=str(small_world["model"]), target="tatoeba", data_dir=str(data),
                          out=str(tmp_path / "run"), progress=False, **extra)
    run = run_pipeline(cfg)
    scores = json.loads((run / "scores.json").read_text())
    assert list(scores["tasks"]["tatoeba"]["languages"]) == ["de"]
    assert not (run / "phase2").exists()
    assert precisions == ["no" if capped else "auto"] * 2  # the German side and the English side


def test_mlm_phase0_and_cotraining_then_interrupted_run_resumes(small_world, tmp_path, monkeypatch):
    """Phase 0 MLM -> PAN-X with MLM co-training -> UDPOS; a crash in phase 2 resumes there."""
    import xstilts.study.pipeline as pipeline_module
    import xstilts.train.loop as loop
    from xstilts.study.pipeline import run_pipeline
    from xstilts.study.run_config import load_run_config

    raw = tmp_path / "raw.txt"
    lines = []
    for name in ("test-fr", "test-es"):
        lines += [" ".join(l.split("\t")[0] for l in block.splitlines())
                  for block in (small_world["data"] / "udpos" / f"{name}.tsv").read_text().strip().split("\n\n")]
    raw.write_text("\n".join(lines) + "\n")
    cfg = load_run_config(
        None, model=str(small_world["model"]), target="udpos", data_dir=str(small_world["data"]),
        out=str(tmp_path / "run"), progress=False, languages=["es"], eval_max_examples=3,
        mlm={"data": str(raw)},
        intermediate={"tasks": ["panx"], "mlm": {"probability": 0.3, "data": str(raw)}},
        hyperparameters={"mlm": {"learning_rate": 1e-3, "batch_size": 4},
                         "intermediate": {"learning_rate": 1e-3, "batch_size": 8, "epochs": 1},
                         "target": {"learning_rate": 1e-3, "batch_size": 8, "grad_accum": 1, "epochs": 1}},
    )
    calls: list[str] = []
    real_train = loop.train

    def crash_in_phase2(model, *a, **kw):
        calls.append(kw.get("description", ""))
        if kw.get("description", "").startswith("phase2"):
            raise RuntimeError("killed in phase 2")
        return real_train(model, *a, **kw)

    monkeypatch.setattr(pipeline_module, "train", crash_in_phase2)
    with pytest.raises(RuntimeError, match="killed in phase 2"):
        run_pipeline(cfg)
    assert calls == ["phase0-mlm", "phase1", "phase2-udpos"]
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["phase0"]["texts"] == 20 and metrics["phase0"]["lm_head_loaded"] is False
    assert metrics["phase1"]["probabilities"] == pytest.approx({"panx": 0.7, "mlm": 0.3})
    assert not (run / "run.json").exists()
    stamp = (run / "encoder" / "model.safetensors").stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(pipeline_module, "train", lambda model, *a, **kw: (calls.append(kw.get("description")), real_train(model, *a, **kw))[1])
    run_pipeline(cfg)
    assert calls == ["phase2-udpos"]  # phases 0 and 1 were finished: not trained again
    assert (run / "encoder" / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((run / "scores.json").read_text())["tasks"]["udpos"]["languages"].keys() == {"es"}
    assert json.loads((run / "versions.json").read_text())["starts"] == 2


def test_random_init_control_uses_fresh_weights(small_world, tmp_path):
    from safetensors.torch import load_file

    from xstilts.study.pipeline import Pipeline
    from xstilts.study.run_config import load_run_config

    base = dict(model=str(small_world["model"]), target="udpos", data_dir=str(small_world["data"]),
                out=str(tmp_path / "r"))
    saved = load_file(str(small_world["model"] / "model.safetensors"))
    key = "embeddings.word_embeddings.weight"
    pretrained, _ = Pipeline(load_run_config(None, **base)).load_encoder(str(small_world["model"]))
    assert torch.equal(pretrained.state_dict()[key], saved[key])
    control = Pipeline(load_run_config(None, **base, random_init=True))
    random_a, _ = control.load_encoder(str(small_world["model"]))
    random_b, _ = control.load_encoder(str(small_world["model"]))
    assert not torch.equal(random_a.state_dict()[key], saved[key])
    assert torch.equal(random_a.state_dict()[key], random_b.state_dict()[key])  # seeded
    assert type(random_a) is type(pretrained) and random_a.config.hidden_size == pretrained.config.hidden_size


def test_machine_translated_copies_are_read_with_the_same_reader(small_world, tmp_path):
    import logging

    from xstilts.study.pipeline import Pipeline
    from xstilts.study.run_config import load_run_config
    from xstilts.tasks import get_task

    # a "translated" copy: the same layout in its own folder (here: the German dev file's sentences)
    mt = tmp_path / "mt-de"
    head_sentences(small_world["data"] / "panx" / "dev-de.tsv", mt / "panx" / "train-en.tsv", 7)
    cfg = load_run_config(None, model=str(small_world["model"]), target="udpos", data_dir=str(small_world["data"]),
                          out=str(tmp_path / "r"),
                          intermediate={"tasks": [{"task": "panx", "translated": {"de": str(mt)}}]})
    pipe = Pipeline(cfg)
    pipe.log = logging.getLogger("test")
    train, dev = pipe.intermediate_examples(cfg.intermediate.tasks[0], get_task("panx"), None)
    assert len(train) == 48 + 7
    assert all(ex.id.startswith("de:") for ex in train[48:]) and not train[0].id.startswith("de:")
    assert len(dev) == 10
    capped, _ = pipe.intermediate_examples(cfg.intermediate.tasks[0], get_task("panx"), 5)
    assert len(capped) == 5 + 5


@pytest.fixture(scope="module")
def code_world(small_world, tmp_path_factory):
    """small_world's UDPOS slices plus the first 40 real CoNaLa training examples, and a tiny
    XLM-R whose vocabulary covers both."""
    import shutil

    from xstilts.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("code_world")
    data = root / "data"
    shutil.copytree(small_world["data"] / "udpos", data / "udpos")
    records = json.loads(shared_file("conala_curated/train.json").read_text(encoding="utf-8"))[:40]
    (data / "conala_curated").mkdir(parents=True)
    (data / "conala_curated" / "train.json").write_text(json.dumps(records), encoding="utf-8")
    words = [" ".join(p.read_text(encoding="utf-8").split()) for p in sorted((data / "udpos").glob("*.tsv"))]
    words += [f"{r['rewritten_intent'] or r['intent']} {r['snippet']}" for r in records]
    build_tiny_model(root / "tiny", extra_text=words, hidden_size=32, num_layers=2, vocab_size=1500)
    return {"data": data, "model": root / "tiny"}


def test_conala_generate_then_udpos_carries_the_encoder_and_scores_every_language(code_world, tmp_path):
    """Phase 1 CoNaLa (generate, formulation options from the config) -> UDPOS: the run completes,
    reports the code task's quality before and after phase 1, phase 2 starts from the phase-1
    encoder, and every UDPOS test language is scored."""
    from xstilts.study.pipeline import run_pipeline
    from xstilts.study.run_config import load_run_config

    cfg = load_run_config(
        None, model=str(code_world["model"]), target="udpos", data_dir=str(code_world["data"]),
        out=str(tmp_path / "run"), seed=1, progress=False, eval_max_examples=4,
        intermediate={"tasks": [{"task": "conala", "formulation": "generate", "train_split": "train", "heldout": 8,
                                 "options": {"decoder_layers": 1, "max_target_length": 24}}]},
        hyperparameters={"intermediate": {"learning_rate": 1e-4, "batch_size": 8, "max_steps": 8, "eval_every": 0},
                         "target": {"learning_rate": 1e-3, "batch_size": 8, "grad_accum": 1, "epochs": 1}},
    )
    run = run_pipeline(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    phase1 = metrics["phase1"]
    assert phase1["sizes"] == {"conala": 32}
    assert phase1["tasks"]["conala"]["decoder_layers"] == 1  # the option reached the builder
    assert phase1["settings"]["conala"]["max_target_length"] == 24
    for when in ("quality_before", "quality"):
        assert {"exact_match", "bleu", "smoothed_bleu4", "codebleu", "loss"} <= set(phase1[when]["conala"]), when
    assert phase1["quality"]["conala"]["loss"] != phase1["quality_before"]["conala"]["loss"]  # measured apart
    assert json.loads((run / "phase1" / "quality_before.json").read_text()) == phase1["quality_before"]
    assert metrics["phase2"]["encoder_check"]["tensors_checked"] >= 10
    langs = json.loads((run / "scores.json").read_text())["tasks"]["udpos"]["languages"]
    assert sorted(langs) == ["en", "es", "fr"]


def test_unknown_formulation_option_is_a_config_error():
    from xstilts.study.run_config import load_run_config

    with pytest.raises(ConfigError, match="unknown option decoder_layer; allowed: max_target_length, decoder_layers"):
        load_run_config(None, model="m", target="udpos", data_dir="d", out="o",
                        intermediate={"tasks": [{"task": "conala", "options": {"decoder_layer": 2}}]})
    with pytest.raises(ConfigError, match=r"mnli \(head\): unknown option num_beams; allowed: \(none"):
        load_run_config(None, model="m", target="udpos", data_dir="d", out="o",
                        intermediate={"tasks": [{"task": "mnli", "options": {"num_beams": 2}}]})


def test_dev_predictions_are_not_filed_as_test(small_world, tmp_path):
    """PAN-X scored on dev (its test labels are hidden): the XTREME-layout files go to
    predictions-dev/ and labels-dev/, never to predictions/, which holds test predictions."""
    from xstilts.study.pipeline import run_pipeline
    from xstilts.study.run_config import load_run_config

    cfg = load_run_config(
        None, model=str(small_world["model"]), target="panx", eval_split="dev", languages=["de"],
        data_dir=str(small_world["data"]), out=str(tmp_path / "run"), seed=1, progress=False, eval_max_examples=3,
        hyperparameters={"target": {"learning_rate": 1e-3, "batch_size": 8, "grad_accum": 1, "epochs": 1}},
    )
    run = run_pipeline(cfg)
    assert (run / "predictions-dev" / "panx" / "test-de.tsv").is_file()
    assert (run / "labels-dev" / "panx" / "test-de.tsv").is_file()
    assert not (run / "predictions").exists() and not (run / "labels").exists()
    assert json.loads((run / "scores.json").read_text())["tasks"]["panx"]["languages"].keys() == {"de"}


def test_run_pawsx_packs_sentence_pairs_and_scores(small_world, tmp_path):
    """A sentence-pair target trains on packed rows (first-token head) and scores every language."""
    text = (small_world["data"] / "udpos" / "train-en.tsv").read_text(encoding="utf-8")
    sentences = [[line.split("\t")[0] for line in block.splitlines()] for block in text.strip().split("\n\n")]
    sentences = [s[:12] for s in sentences if len(s) >= 4]

    def pairs(start: int, n: int) -> str:
        rows = []
        for i in range(start, start + n):
            s = sentences[i % len(sentences)]
            other = s if i % 2 else s[::-1]  # label 1: the same sentence; 0: reversed
            rows.append(f"{' '.join(s)}\t{' '.join(other)}\t{i % 2}")
        return "\n".join(rows) + "\n"

    data = tmp_path / "data" / "pawsx"
    data.mkdir(parents=True)
    for name, start, n in (("train-en", 0, 32), ("dev-en", 32, 8), ("test-en", 40, 8), ("test-de", 48, 6)):
        (data / f"{name}.tsv").write_text(pairs(start, n), encoding="utf-8")
    out = tmp_path / "run"
    args = ["run", "--model", str(small_world["model"]), "--target", "pawsx", "--data-dir",
            str(tmp_path / "data"), "--out", str(out), "--seed", "3", "--epochs", "1", "--lr", "1e-3",
            "--batch-size", "8", "--max-length", "64", "--no-progress"]
    assert _cli(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["phase2"]["packed"] is True
    assert metrics["phase2"]["train"]["global_step"] == 4
    langs = json.loads((out / "scores.json").read_text())["tasks"]["pawsx"]["languages"]
    assert sorted(langs) == ["de", "en"]
    assert all(0.0 <= m["accuracy"] <= 100.0 for m in langs.values())
    predictions = (out / "predictions" / "pawsx" / "test-de.tsv").read_text().split()
    assert len(predictions) == 6 and set(predictions) <= {"0", "1"}


@pytest.mark.parametrize("pack", [True, False])
def test_pack_sequences_switches_training_and_prediction(small_world, tmp_path, monkeypatch, pack):
    """`pack_sequences: false` turns packing off for phase 2 and for every prediction alike; the
    zero-shot predictions take the target phase's `mixed_precision` (dev evaluation inside the
    training loop runs under the loop's own autocast and adds none) and the run's batch bounds."""
    import xstilts.evaluation.predict as predict
    from xstilts.study.pipeline import run_pipeline
    from xstilts.study.run_config import load_run_config

    seen: list[tuple[bool, str]] = []
    bounds: set[tuple[int, int]] = set()
    real_run_model = predict.run_model

    def spy(*a, pack=False, precision="no", **kw):
        seen.append((pack, precision))
        bounds.add((kw["batch_size"], kw["max_tokens"]))
        return real_run_model(*a, pack=pack, precision=precision, **kw)

    monkeypatch.setattr(predict, "run_model", spy)
    precision = {} if pack else {"mixed_precision": "no"}
    cfg = load_run_config(
        None, model=str(small_world["model"]), target="udpos", data_dir=str(small_world["data"]),
        out=str(tmp_path / "run"), seed=1, progress=False, eval_max_examples=3, languages=["fr"],
        hyperparameters={"target": {"learning_rate": 1e-3, "batch_size": 8, "grad_accum": 1, "epochs": 1,
                                    "pack_sequences": pack, **precision}},
        **({} if pack else {"predict_batch_size": 5, "predict_max_tokens": 300}),
    )
    run = run_pipeline(cfg)
    assert json.loads((run / "metrics.json").read_text())["phase2"]["packed"] is pack
    assert len(seen) >= 2 and {p for p, _ in seen} == {pack}  # dev-en model selection and the fr test set
    assert [p for _, p in seen] == ["no"] * (len(seen) - 1) + ["auto" if pack else "no"]
    # every prediction takes the run's batch bounds (defaults: 512 features, the device's tokens)
    assert bounds == ({(512, None)} if pack else {(5, 300)})


def test_run_xquad_trains_packed_qa_and_scores(small_world, tmp_path):
    """A QA target: SQuAD-format training (here XQuAD-en paragraphs), packed rows, every language."""
    source = json.loads(shared_file("xquad/xquad.en.json").read_text(encoding="utf-8"))
    german = json.loads(shared_file("xquad/xquad.de.json").read_text(encoding="utf-8"))

    def subset(doc, first, n):  # the questions of one article's first paragraphs
        paragraphs = doc["data"][0]["paragraphs"][first : first + n]
        return {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}

    data = tmp_path / "data"
    for rel, doc in (("squad/train-v1.1.json", subset(source, 0, 4)), ("xquad/xquad.en.json", subset(source, 4, 2)),
                     ("xquad/xquad.de.json", subset(german, 4, 2))):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(json.dumps(doc), encoding="utf-8")
    out = tmp_path / "run"
    args = ["run", "--model", str(small_world["model"]), "--target", "xquad", "--data-dir", str(data),
            "--out", str(out), "--seed", "3", "--epochs", "1", "--lr", "1e-3", "--batch-size", "8",
            "--max-length", "128", "--languages", "en,de", "--no-progress"]
    assert _cli(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["phase2"]["packed"] is True and metrics["phase2"]["train_features"] >= 8
    langs = json.loads((out / "scores.json").read_text())["tasks"]["xquad"]["languages"]
    assert sorted(langs) == ["de", "en"]
    assert all(0.0 <= m["f1"] <= 100.0 for m in langs.values())
