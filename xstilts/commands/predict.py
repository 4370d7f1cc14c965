"""``xstilts predict``: zero-shot predictions of one task in every language, in XTREME's layout."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from xstilts.data.batching import PREDICT_BATCH_SIZE


class Pooling(str, Enum):
    mean = "mean"
    cls = "cls"


class Precision(str, Enum):
    auto = "auto"
    no = "no"
    bf16 = "bf16"
    fp16 = "fp16"


def _split_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out: list[str] = []
    for item in values:
        out.extend(x for x in item.replace(",", " ").split() if x)
    return out or None


def predict(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="A trained task model folder (head.json + encoder/); for bucc2018/tatoeba any encoder "
            "(folder, converted name such as multilingual-e5-small, or hub id).",
        ),
    ],
    task: Annotated[str, typer.Option("--task", "-t", help="Task name (see `xstilts tasks`).")],
    data_dir: Annotated[
        str, typer.Option("--data-dir", "-d", help="Folder holding the task's files, or hub:[DIR] to fetch them.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output root: files go to OUT/{task}/test-{lang}.*")
    ],
    languages: Annotated[
        Optional[list[str]],
        typer.Option(
            "--languages",
            "-l",
            help="Languages (repeat or comma-separate). Default: every one present.",
        ),
    ] = None,
    split: Annotated[
        Optional[str],
        typer.Option(
            "--split",
            help="Split to predict (default: the task's scored split, test). PAN-X test labels are hidden: use dev.",
        ),
    ] = None,
    layer: Annotated[
        Optional[int],
        typer.Option(
            "--layer",
            help="Retrieval: hidden layer to pool (0 = embeddings, N = output of layer N).",
        ),
    ] = None,
    pooling: Annotated[
        Pooling, typer.Option("--pooling", help="Retrieval: mean over tokens or first token.")
    ] = Pooling.mean,
    prefix: Annotated[
        str,
        typer.Option(
            "--prefix", help="Retrieval: text put before every sentence (e.g. 'query: ' for E5)."
        ),
    ] = "",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Sentences (features) per batch, at most.")
    ] = PREDICT_BATCH_SIZE,
    max_tokens: Annotated[
        Optional[int],
        typer.Option(
            "--max-tokens",
            min=0,
            help="Padded tokens per batch, at most (default: 16384 on GPUs, 1024 on CPU); "
            "0: batches bounded by --batch-size alone.",
        ),
    ] = None,
    max_length: Annotated[
        Optional[int],
        typer.Option(
            "--max-length",
            min=8,
            help="Max tokens per feature (default: 128; 384 for QA; 512 retrieval).",
        ),
    ] = None,
    doc_stride: Annotated[
        int, typer.Option("--doc-stride", min=1, help="QA: tokens between window starts.")
    ] = 128,
    device: Annotated[
        Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: GPU if any).")
    ] = None,
    precision: Annotated[
        Precision,
        typer.Option(
            "--precision",
            help="Autocast for the forward passes: auto = bf16 on GPUs (as training), none on CPU; "
            "no = float32. Retrieval embeddings too (pooled in float32 either way).",
        ),
    ] = Precision.auto,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Predict every language of a task with no gradient, batches sorted by length; write XTREME's layout."""
    from xstilts.data.fetch import resolve_data_dir
    from xstilts.evaluation.predict import PredictOptions, RetrievalOptions, predict_task

    langs = _split_list(languages)
    folder = resolve_data_dir(data_dir, [(task, langs)], echo=lambda line: typer.echo(line, err=True))
    written = predict_task(
        task,
        model,
        folder,
        out,
        langs,
        split=split,
        options=PredictOptions(batch_size=batch_size, max_tokens=max_tokens, max_length=max_length,
                               doc_stride=doc_stride, device=device, precision=precision.value),
        retrieval=RetrievalOptions(layer=layer, pooling=pooling.value, prefix=prefix),
        progress=not no_progress,
    )
    for lang, path in written.items():
        typer.echo(f"{lang}\t{path}")


def register(app: typer.Typer) -> None:
    """Adds ``predict`` to the app."""
    app.command("predict")(predict)
