"""The one command-line entry point: ``xstilts``.

Each command lives in a module of :mod:`xstilts.commands` that registers itself on the app;
heavy libraries (torch, transformers) are imported inside the commands that need them, so that
``xstilts tasks`` or ``xstilts score`` start instantly.
"""

from __future__ import annotations

import importlib
import os
import sys

# Before torch is ever imported: OpenMP busy-waiting makes small-core CPU training 5-10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from xstilts.errors import XstiltsError  # noqa: E402

app = typer.Typer(
    name="xstilts",
    help="English intermediate-task training for zero-shot cross-lingual transfer (X-STILTs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One module per command (or command group); each defines register(app).
COMMAND_MODULES = (
    "tasks",
    "data",
    "score",
    "model",
    "predict",
    "run",
    "code_eval",
    "study",
    "report",
    "demo",
)


@app.callback()
def _root() -> None:
    """English intermediate-task training for zero-shot cross-lingual transfer (X-STILTs)."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"xstilts.commands.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a user-fixable error becomes one line on stderr and exit status 2."""
    try:
        app(args=argv, prog_name="xstilts")
    except XstiltsError as exc:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        from rich.markup import escape  # data in a message ("[/x]", "[b]") is not markup

        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        return exc.exit_code
    except SystemExit as exc:  # typer's standalone mode exits: usage errors 2, --help 0
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
