"""The training loop: learning, accumulation, batching, early stopping, schedules, checkpoints."""

from __future__ import annotations

import json
from collections import Counter

import pytest

torch = pytest.importorskip("torch")

from train_helpers import accuracy_eval, collate, synthetic_features, tiny_classifier  # noqa: E402

from xstilts.errors import ConfigError  # noqa: E402
from xstilts.train import checkpoint as ck  # noqa: E402
from xstilts.train.batching import LengthGroupedPlanner  # noqa: E402
from xstilts.train.loop import train  # noqa: E402
from xstilts.train.schedule import linear_factor, warmup_steps_for  # noqa: E402
from xstilts.train.train_config import TrainConfig  # noqa: E402


def quiet(**kw) -> TrainConfig:
    kw.setdefault("progress", False)
    kw.setdefault("tensorboard", False)
    return TrainConfig(**kw)


def test_loss_decreases_and_model_learns(tmp_path):
    model = tiny_classifier(seed=0)
    feats = synthetic_features(128, seed=1)
    dev = synthetic_features(64, seed=2)
    before = accuracy_eval(dev)(model.eval())
    cfg = quiet(learning_rate=3e-3, batch_size=16, epochs=6, seed=3, log_every=1)
    result = train(model.train(), feats, collate, cfg, out_dir=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if x["kind"] == "train"]
    assert result.global_step == 6 * 8
    assert len(losses) == 48
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < first * 0.8, (first, last)
    after = accuracy_eval(dev)(model.eval())
    assert after["loss"] < before["loss"]
    assert after["accuracy"] > 0.7
    assert (tmp_path / "result.json").is_file() and (tmp_path / "final" / "model.pt").is_file()
    assert not (tmp_path / "checkpoints").exists()  # removed once finished


def test_deterministic_given_seed(tmp_path):
    from train_helpers import weights_digest

    digests = []
    for run in ("a", "b"):
        model = tiny_classifier(seed=0, dropout=0.1)
        cfg = quiet(learning_rate=1e-3, batch_size=8, epochs=2, seed=11)
        train(model, synthetic_features(40, seed=1), collate, cfg, out_dir=tmp_path / run)
        digests.append(weights_digest(model))
    assert digests[0] == digests[1]


def test_accumulation_2x8_equals_1x16(tmp_path):
    feats = synthetic_features(64, seed=4)
    params = []
    for bs, acc in ((16, 1), (8, 2)):
        model = tiny_classifier(seed=0)
        # no grouping: then the 8-batches are exactly the halves of the 16-batches
        cfg = quiet(learning_rate=1e-3, batch_size=bs, grad_accum=acc, epochs=2, seed=7,
                    group_by_length=False, max_grad_norm=None)
        result = train(model, feats, collate, cfg, out_dir=tmp_path / f"b{bs}")
        assert result.global_step == 8
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    untrained = torch.cat([p.detach().flatten() for p in tiny_classifier(seed=0).parameters()])
    assert not torch.allclose(params[0], untrained)
    assert torch.allclose(params[0], params[1], atol=1e-5), (params[0] - params[1]).abs().max()


def test_length_grouping_keeps_each_example_once_per_epoch():
    lengths = [((i * 37) % 50) + 1 for i in range(203)]
    planner = LengthGroupedPlanner(lengths, 8, seed=3, mega_batch_mult=4)
    plain = LengthGroupedPlanner(lengths, 8, seed=3, group_by_length=False)
    for epoch in range(3):
        batches = planner.plan(epoch)
        seen = Counter(i for b in batches for i in b)
        assert sorted(seen) == list(range(203)) and set(seen.values()) == {1}
        assert len(batches) == 26 and all(len(b) == 8 for b in batches[:-1]) and len(batches[-1]) == 3
        # grouping makes batches far more uniform in length than plain shuffling
        def waste(bs):
            return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)
        assert waste(batches) < waste(plain.plan(epoch)) / 3
    assert planner.plan(0) != planner.plan(1)  # reshuffled every epoch
    assert planner.plan(1) == LengthGroupedPlanner(lengths, 8, seed=3, mega_batch_mult=4).plan(1)


def test_length_grouping_splits_across_processes():
    lengths = list(range(1, 51))
    ranks = [LengthGroupedPlanner(lengths, 4, seed=0, world_size=3, rank=r) for r in range(3)]
    plans = [r.plan(0) for r in ranks]
    assert [len(p) for p in plans] == [4, 4, 4]  # 13 batches cut to 12
    flat = [i for p in plans for b in p for i in b]
    assert len(flat) == len(set(flat))


def test_schedule_linear_warmup_then_decay():
    assert warmup_steps_for(100, 0.1, None) == 10
    assert warmup_steps_for(100, 0.1, 3) == 3
    assert linear_factor(0, warmup=10, total=100) == 0.0
    assert linear_factor(5, warmup=10, total=100) == 0.5
    assert linear_factor(10, warmup=10, total=100) == 1.0
    assert linear_factor(55, warmup=10, total=100) == 0.5
    assert linear_factor(100, warmup=10, total=100) == 0.0
    assert linear_factor(0, warmup=0, total=4) == 1.0


def test_lr_follows_schedule_in_training(tmp_path):
    model = tiny_classifier(seed=0)
    cfg = quiet(learning_rate=1e-3, batch_size=8, epochs=1, warmup_steps=2, log_every=1, seed=0)
    train(model, synthetic_features(48, seed=1), collate, cfg, out_dir=tmp_path)  # 6 steps
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    # lr after step s is factor(s): 0.5, 1.0, then linear to 0 over the 4 remaining steps
    assert lrs == pytest.approx([5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0])


def test_early_stopping_keeps_best(tmp_path):
    model = tiny_classifier(seed=0)
    feats = synthetic_features(64, seed=1)
    calls = []
    scripted = [0.5, 0.8, 0.6, 0.7, 0.65, 0.9]

    def eval_fn(m):
        calls.append(sum(float(p.detach().sum()) for p in m.parameters()))
        return {"accuracy": scripted[len(calls) - 1]}

    cfg = quiet(learning_rate=1e-3, batch_size=8, epochs=10, eval_every=2, patience=3,
                metric_for_best="accuracy", seed=0)
    result = train(model, feats, collate, cfg, eval_fn=eval_fn, out_dir=tmp_path)
    assert result.stopped_early
    assert [h["accuracy"] for h in result.eval_history] == [0.5, 0.8, 0.6, 0.7, 0.65]
    assert result.best_metric == 0.8 and result.best_step == 4 and result.global_step == 10
    # the returned model holds the best weights (those evaluated second)
    assert sum(float(p.detach().sum()) for p in model.parameters()) == pytest.approx(calls[1], abs=1e-4)
    assert json.loads((tmp_path / "best" / "meta.json").read_text())["step"] == 4


def test_rerun_of_finished_training_does_not_train(tmp_path):
    from train_helpers import weights_digest

    cfg = quiet(learning_rate=1e-3, batch_size=8, epochs=1, seed=0)
    model = tiny_classifier(seed=0)
    first = train(model, synthetic_features(32, seed=1), collate, cfg, out_dir=tmp_path)
    fresh = tiny_classifier(seed=0)
    again = train(fresh, synthetic_features(32, seed=1), collate, cfg, out_dir=tmp_path)
    assert weights_digest(fresh) == weights_digest(model)
    assert again.global_step == first.global_step


def test_config_errors_say_what_is_allowed():
    with pytest.raises(ConfigError, match="mixed_precision must be one of"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)


def test_model_without_loss_is_a_clear_error(tmp_path):
    model = tiny_classifier(seed=0)

    def no_labels(feats):
        b = collate(feats)
        b.pop("labels")
        return b

    with pytest.raises(ValueError, match="returned no loss"):
        train(model, synthetic_features(8, seed=1), no_labels, quiet(batch_size=4), out_dir=tmp_path)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    root = tmp_path / "ckpts"
    tmp = ck.begin_checkpoint(root, 3)
    ck.torch_save_durably({"w": torch.ones(2)}, tmp / "model.pt")
    good = ck.commit_checkpoint(root, tmp, 3, {"step": 3}, keep=2)
    assert ck.latest_checkpoint(root) == good
    # a writer killed half-way through step 6: temp folder exists, latest untouched
    tmp6 = ck.begin_checkpoint(root, 6)
    (tmp6 / "model.pt").write_bytes(b"\x00partial")
    assert ck.latest_checkpoint(root, clean=False) == good
    assert ck.latest_checkpoint(root) == good and not tmp6.exists()  # cleaned
    # killed between the rename of the folder and the move of the pointer: the pointer still
    # names step 3, which is complete; step 6 (complete) is then also available
    tmp6 = ck.begin_checkpoint(root, 6)
    ck.torch_save_durably({"w": torch.zeros(2)}, tmp6 / "model.pt")

    real_replace = ck.os.replace

    def crash_on_pointer(src, dst):
        if str(dst).endswith(ck.LATEST):
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", crash_on_pointer)
    with pytest.raises(KeyboardInterrupt):
        ck.commit_checkpoint(root, tmp6, 6, {"step": 6}, keep=2)
    monkeypatch.setattr(ck.os, "replace", real_replace)
    assert (root / ck.LATEST).read_text().strip() == "step-00000003"
    assert ck.latest_checkpoint(root) == good
    # a pointer naming a missing or incomplete folder falls back to the newest complete one
    (root / ck.LATEST).write_text("step-00000099\n")
    assert ck.latest_checkpoint(root).name == "step-00000006"


def test_resume_in_process_matches_uninterrupted(tmp_path):
    """Stop after a checkpoint (simulated crash by exception), resume, compare with one run."""
    from train_helpers import weights_digest

    feats = synthetic_features(48, seed=1)
    cfg = quiet(learning_rate=2e-3, batch_size=8, epochs=3, checkpoint_every=4, seed=9,
                keep_checkpoints=1, log_every=1)

    full = tiny_classifier(seed=0, dropout=0.1)
    train(full, feats, collate, cfg, out_dir=tmp_path / "full")

    calls = {"n": 0}

    def crashing_collate(batch):
        calls["n"] += 1
        if calls["n"] == 11:  # after the checkpoint at step 8 (epoch 2 of 6 steps each)
            raise RuntimeError("simulated crash")
        return collate(batch)

    part = tiny_classifier(seed=0, dropout=0.1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(part, feats, crashing_collate, cfg, out_dir=tmp_path / "part")
    assert ck.latest_checkpoint(tmp_path / "part" / "checkpoints").name == "step-00000008"
    resumed = tiny_classifier(seed=123, dropout=0.1)  # different init: everything must come from the checkpoint
    result = train(resumed, feats, collate, cfg, out_dir=tmp_path / "part")
    assert result.resumed_from_step == 8
    assert weights_digest(resumed) == weights_digest(full)
    log_full = (tmp_path / "full" / "log.jsonl").read_text()
    assert (tmp_path / "part" / "log.jsonl").read_text() == log_full


def test_resume_refuses_other_data(tmp_path):
    feats = synthetic_features(48, seed=1)
    cfg = quiet(learning_rate=2e-3, batch_size=8, epochs=3, checkpoint_every=2, seed=9)

    seen: list[int] = []

    def crashing(batch):
        seen.append(1)
        if len(seen) > 5:
            raise RuntimeError("boom")
        return collate(batch)

    with pytest.raises(RuntimeError):
        train(tiny_classifier(), feats, crashing, cfg, out_dir=tmp_path)
    with pytest.raises(ConfigError, match="cannot resume"):
        train(tiny_classifier(), feats[:40], collate, cfg, out_dir=tmp_path)


def test_loop_equals_a_plain_pytorch_loop(tmp_path):
    """Same batches, AdamW, linear warm-up/decay and clipping written out by hand: same weights."""
    feats = synthetic_features(40, seed=6)
    cfg = quiet(learning_rate=2e-3, batch_size=8, epochs=2, warmup_steps=3, seed=0, group_by_length=False,
                shuffle=False, max_grad_norm=0.5, weight_decay=0.01)
    ours = tiny_classifier(seed=0)
    train(ours, feats, collate, cfg, out_dir=tmp_path)

    plain = tiny_classifier(seed=0)
    decay = [p for n, p in plain.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in plain.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=2e-3)
    total = 10  # 5 batches x 2 epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / 3 if s < 3 else (total - s) / (total - 3))
    plain.train()
    for _ in range(2):
        for start in range(0, 40, 8):
            loss = plain(**collate(feats[start : start + 8])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(plain.parameters(), 0.5)
            opt.step()
            sched.step()
            opt.zero_grad()
    for (name, a), b in zip(ours.named_parameters(), plain.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name


@pytest.mark.parametrize("log_every", [0, 5])
def test_reported_losses_equal_per_step_reads(tmp_path, log_every):
    """Losses stay on the device between reads; the epoch loss and the logged means are still the
    per-step losses (sum of micro-batch losses / accumulation) averaged as a plain loop does."""
    feats = synthetic_features(96, seed=7)
    cfg = quiet(learning_rate=2e-3, batch_size=4, grad_accum=2, epochs=1, seed=0, log_every=log_every,
                group_by_length=False, shuffle=False, max_grad_norm=None)
    ours = tiny_classifier(seed=0)
    result = train(ours, feats, collate, cfg, out_dir=tmp_path)

    plain = tiny_classifier(seed=0)
    opt = torch.optim.AdamW(plain.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (12 - s) / 12)
    plain.train()
    step_losses = []
    for start in range(0, 96, 8):
        window = 0.0
        for micro in (feats[start : start + 4], feats[start + 4 : start + 8]):
            loss = plain(**collate(micro)).loss / 2
            loss.backward()
            window += float(loss.detach())
        opt.step()
        sched.step()
        opt.zero_grad()
        step_losses.append(window)
    assert result.global_step == 12
    assert result.train_loss == pytest.approx(sum(step_losses) / 12, rel=1e-6)
    if log_every:
        logged = [json.loads(x)["loss"] for x in (tmp_path / "log.jsonl").read_text().splitlines()
                  if json.loads(x)["kind"] == "train"]
        expected = [sum(step_losses[i : i + 5]) / 5 for i in (0, 5)]
        assert logged == pytest.approx(expected, rel=1e-6)


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    """From step 7 the loss is NaN: training stops with one clear error naming the step, no
    checkpoint or final weights are written after it, and the step-5 checkpoint is intact."""
    import torch

    from xstilts.errors import NonFiniteLossError

    class GoesNaN(torch.nn.Module):
        def __init__(self, inner, from_call: int) -> None:
            super().__init__()
            self.inner, self.calls, self.from_call = inner, 0, from_call

        def forward(self, **batch):
            self.calls += 1
            out = self.inner(**batch)
            if self.calls >= self.from_call:
                out.loss = out.loss * float("nan")
            return out

    model = GoesNaN(tiny_classifier(seed=0), from_call=7)
    cfg = quiet(learning_rate=1e-3, batch_size=8, epochs=4, seed=1, checkpoint_every=5)
    with pytest.raises(NonFiniteLossError, match=r"the training loss is nan at step 7 \(of 20\)") as info:
        train(model, synthetic_features(40, seed=1), collate, cfg, out_dir=tmp_path)
    assert "the last checkpoint (step-00000005) is intact" in str(info.value)
    steps = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert steps == ["step-00000005"] and not (tmp_path / "final").exists()
    state = json.loads((tmp_path / "checkpoints" / "step-00000005" / ck.STATE_FILE).read_text())
    assert state["trainer"]["global_step"] == 5
