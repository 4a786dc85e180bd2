"""A warm start for trendgen's apps in the tests: `python app_server.py REQUESTS REPLIES` imports every app
and the libraries they load once, then forks a child per request that becomes the app's process.

The child is a process of its own, as a console script's: its argv, environment, working directory and
stdin/stdout/stderr are the request's, it runs the entrypoint with the console script's `sys.exit(main())`,
and it ends through the interpreter's own shutdown (threads joined, atexit handlers run, streams flushed).
What differs from a cold start is only that the imports are done: a variable a library reads at import time
takes the server's value, so `helpers.apps` sends a request here only when such variables are equal.

Protocol: on REPLIES, {"ready", "env"} once the imports are done (`env`: the server's
environment with what they set); then one JSON line per request on REQUESTS ({"argv", "entry", "env", "cwd",
"stdout", "stderr"}), answered with {"pid"} once the child exists and {"pid", "returncode"} when it has ended.
The server ends at EOF.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from importlib.metadata import entry_points
from typing import Any

RECIPES = (
    "trendgen.recipes.train",
    "trendgen.recipes.train_generator",
    "trendgen.recipes.design",
    "trendgen.recipes.evaluate",
    "trendgen.recipes.evaluate_generator",
    "trendgen.recipes.forecast",
)  # what the apps' entrypoints import once they have checked their config


def preload() -> None:
    """Every trendgen console script's module (as pyproject.toml lists them) and the recipes they run."""
    apps = [ep.module for ep in entry_points(group="console_scripts") if ep.name.startswith("trendgen-")]
    for module in (*apps, *RECIPES):
        importlib.import_module(module)


def serve(requests: int, replies: int) -> dict[str, Any] | None:
    """Answer requests until EOF (returns None); in a child, return its request."""
    reader = os.fdopen(requests, "r", encoding="utf-8")
    writer = os.fdopen(replies, "w", encoding="utf-8", buffering=1)
    preload()
    # fork() copies only the calling thread: a Python thread of the server's could hold a lock its children
    # would wait on forever. Then say so and serve nothing (helpers.apps starts each app cold). The native
    # pools that imports start (OpenBLAS's) re-form after a fork, as in the apps' forked DataLoader workers.
    ready = threading.active_count() == 1
    writer.write(json.dumps({"ready": ready, "env": dict(os.environ)}) + "\n")
    if not ready:
        return None
    for line in reader:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            reader.close()
            writer.close()
            return request
        writer.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        writer.write(json.dumps({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n")
    return None


def become(request: dict[str, Any]) -> None:
    """Make this child the process a console script would start for `request`."""
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    os.close(null)
    if request["env"].get("PYTHONUNBUFFERED"):
        sys.stdout.reconfigure(write_through=True)
        sys.stderr.reconfigure(write_through=True)
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(sys.argv[0])  # a script's folder leads sys.path, as for the console script


def main() -> None:
    sys.path[0] = os.path.dirname(sys.executable)  # not tests/helpers, whose modules would shadow libraries
    request = serve(int(sys.argv[1]), int(sys.argv[2]))
    if request is None:
        return
    become(request)
    module, _, attr = request["entry"].partition(":")
    entry = getattr(importlib.import_module(module), attr)
    sys.exit(entry())


if __name__ == "__main__":
    main()
