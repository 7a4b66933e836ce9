"""The ``tasktune`` command. Thin: each subcommand parses, calls one library function, prints.

User mistakes (:class:`tasktune.errors.TaskTuneError`) are printed as one clear message with exit
code 2, never as a traceback.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.markup import escape

from tasktune.cli import (
    backbones_cmd,
    prompt_cmd,
    prompt_tune_cmd,
    registry_cmd,
    report_cmd,
    run_cmd,
    serve_cmd,
    task_cmd,
)
from tasktune.cli.console import console, err_console
from tasktune.errors import TaskTuneError

app = typer.Typer(
    name="tasktune",
    help="Adapt a pre-trained language model to your task: prompt, prompt-tune or fine-tune, "
    "measured side by side.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(task_cmd.app, name="task")
app.add_typer(backbones_cmd.app, name="backbones")
app.add_typer(registry_cmd.app, name="registry")
app.add_typer(prompt_cmd.app, name="prompt")
app.add_typer(prompt_tune_cmd.app, name="prompt-tune")
app.command("run")(run_cmd.run)
app.command("demo")(run_cmd.demo)
app.command("report")(report_cmd.report)
app.command("serve")(serve_cmd.serve)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens (device choice, loads)."),
):
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (0 ok, 2 user error)."""
    try:
        # Without standalone mode, click *returns* the code of a typer.Exit instead of raising it.
        code = app(args=argv, prog_name="tasktune", standalone_mode=False)
        if isinstance(code, int) and code:
            return code
    except TaskTuneError as err:
        # Escaped: a message quotes user paths and values, and "[/b]" in one made Rich raise here.
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 2
    except _PATH_ERRORS as err:
        # A path the user gave that cannot be read or written (an --out that is a file, a --json into a
        # folder that does not exist): what and where, not a traceback.
        if err.filename is None:
            raise
        where = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 else "")
        message = f"[bold red]error:[/] {escape(str(err.strerror or err))}: {escape(where)}"
        err_console.print(message, highlight=False, soft_wrap=True)
        return 2
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("aborted")
        return 130
    except Exception as err:
        # Usage errors and typer.Exit carry an exit code (typer vendors click in recent versions, so
        # match on the attributes rather than on click's classes).
        code = getattr(err, "exit_code", None)
        if code is None:
            raise
        if hasattr(err, "show"):
            err.show()
        return int(code)
    return 0


def entry() -> None:
    sys.exit(main())


__all__ = ["app", "console", "entry", "main"]
