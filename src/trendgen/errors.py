"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 2


class TrendgenError(Exception):
    """An error the user can fix (bad path, bad input, bad setting). Printed as one line."""


def first_line(err: BaseException) -> str:
    """An exception's first line of text (its type's name when it has none), for one-line messages."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


_task_started = False  # set once an app's task runs: Hydra composed its config


def exit_on_user_error(fn: F) -> F:
    """Run a task; a TrendgenError becomes `trendgen: error: ...` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from omegaconf.errors import MissingMandatoryValue

        global _task_started
        _task_started = True
        try:
            return fn(*args, **kwargs)
        except TrendgenError as err:
            print(f"trendgen: error: {err}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)
        except MissingMandatoryValue as err:  # a `???` in the config nobody set
            key = getattr(err, "full_key", None) or first_line(err)
            print(
                f"trendgen: error: {key} is not set (it has no default: give it on the command line)",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(EXIT_USER_ERROR)

    return wrapper  # type: ignore[return-value]


def config_errors_exit_2(main: F) -> F:
    """An app's entrypoint whose config Hydra cannot compose (an unknown key, a wrong type, a bad override:
    Hydra says which in a few lines, no traceback, and exits 1) exits 2, as every user error does."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except SystemExit as exit:
            if exit.code == 1 and not _task_started:
                raise SystemExit(EXIT_USER_ERROR) from None
            raise

    return wrapper  # type: ignore[return-value]
