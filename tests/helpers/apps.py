"""Run trendgen's apps from the tests as real processes, started warm.

`run_app(cmd, ...)` takes what `subprocess.run(cmd, capture_output=True, text=True)` takes and returns what it
returns. When `cmd[0]` is one of the venv's trendgen console scripts, the process is forked from a server
(`app_server.py`, one per test process) that has imported the apps and their libraries once: `trendgen-train`
spends about 10 s of a 2-core machine in its imports (Lightning, torchmetrics, transformers, torch's dynamo)
before its first step, and the suite starts the apps some sixty times. Everything after the imports is the
app's own run in a process of its own: argv, environment, working directory, exit code and output.

The server starts with the test process's environment as `tests/conftest.py` left it, before any test
changed it. A request goes cold (a plain subprocess) when its environment differs from that in a variable a
library may read at import time: only those read when the apps run may differ (RUN_TIME_VARIABLES; not
OPENAI_LOG, which the openai package reads on import). It goes cold too when the server saw threads it cannot
fork, and everywhere under `TRENDGEN_TEST_COLD_APPS=1`. Tests of start-up itself (the wheel's scripts,
signals, torchrun, SLURM) start their processes directly.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
SERVER = Path(__file__).with_name("app_server.py")
RUN_TIME_VARIABLES = ("TRENDGEN_", "WANDB_", "PYTEST_")  # prefixes, and the names below
RUN_TIME_NAMES = frozenset(
    {"OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN", "PYTHONUNBUFFERED"}
    | {"MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED", "PL_SEED_WORKERS"}
)  # the last four: the test process's own DDP tests and seed_everything leave them set
# Set by the libraries' own imports (lightning_fabric, scikit-learn, torch's inductor), in the test process as
# in the server, or in one of them only: an app's imports set them in a cold start too.
SET_BY_IMPORTS = frozenset(
    ("PYTORCH_NVML_BASED_CUDA_CHECK", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK", "TORCHINDUCTOR_CACHE_DIR")
)
COLD = os.environ.get("TRENDGEN_TEST_COLD_APPS") == "1"
_base_env: dict[str, str] | None = None


def remember_environment() -> None:
    """The environment the server will start with: call it before any test changes os.environ."""
    global _base_env
    _base_env = dict(os.environ)


def read_at_run_time(name: str) -> bool:
    return name in RUN_TIME_NAMES or name in SET_BY_IMPORTS or name.startswith(RUN_TIME_VARIABLES)


def console_entry(program: str) -> str | None:
    """ "module:function" of a trendgen console script of this venv (`cmd[0]` as a path), else None."""
    path = Path(program)
    if path.parent != BIN or not path.name.startswith("trendgen-"):
        return None
    found = entry_points(group="console_scripts", name=path.name)
    return next((ep.value for ep in found), None)


def differing_variables(env: Mapping[str, str], base: Mapping[str, str]) -> set[str]:
    return {k for k in env.keys() | base.keys() if env.get(k) != base.get(k)}


class AppServer:
    """The per-process server: started on the first warm request, ended when the test process ends."""

    def __init__(self) -> None:
        self.env = dict(os.environ if _base_env is None else _base_env)
        self.lock = threading.Lock()
        requests_read, self.requests = os.pipe()
        self.replies, replies_write = os.pipe()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (the server's stderr for as long as it runs)
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), str(requests_read), str(replies_write)],
            pass_fds=(requests_read, replies_write),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        os.close(requests_read)
        os.close(replies_write)
        self.pending = b""
        self.ready: bool | None = None

    def serves(self, env: Mapping[str, str]) -> bool:
        if self.ready is None:
            hello = self.read_reply(timeout=300)
            self.ready = bool(hello.get("ready"))
            self.env = hello["env"]  # with what its imports set (TORCHINDUCTOR_CACHE_DIR, KMP_*), as here
        changed = differing_variables(env, self.env)
        return self.ready and all(read_at_run_time(k) for k in changed)

    def read_reply(self, timeout: float | None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.replies], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(self.replies, 65536)
            if not chunk:
                self.log.seek(0)
                raise RuntimeError(f"the app server ended: {self.log.read().decode()[-3000:]}")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return json.loads(line)

    def run(
        self, cmd: list[str], entry: str, env: Mapping[str, str], cwd: str, timeout: float | None
    ) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory(prefix="app-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            request = {"argv": cmd, "entry": entry, "env": dict(env), "cwd": cwd}
            request.update(stdout=str(out), stderr=str(err))
            os.write(self.requests, (json.dumps(request) + "\n").encode())
            pid = self.read_reply(timeout=60)["pid"]
            try:
                returncode = self.read_reply(timeout)["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)  # as subprocess.run does on its timeout
                self.read_reply(timeout=60)
                raise subprocess.TimeoutExpired(cmd, timeout, read_text(out), read_text(err)) from None
            return subprocess.CompletedProcess(cmd, returncode, read_text(out), read_text(err))

    def close(self) -> None:
        os.close(self.requests)  # EOF: the server returns from its loop and exits
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def read_text(path: Path) -> str:
    """A file the child wrote, decoded as `text=True` decodes a pipe (universal newlines)."""
    if not path.exists():
        return ""
    return path.read_bytes().decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n")


_server: AppServer | None = None


def app_server() -> AppServer:
    global _server
    if _server is None:
        _server = AppServer()
        atexit.register(_server.close)
    return _server


def run_app(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(cmd, cwd=, env=, timeout=, capture_output=True, text=True)`, warm where it can be."""
    cmd = [str(part) for part in cmd]
    entry = None if COLD else console_entry(cmd[0])
    full_env = dict(os.environ if env is None else env)
    if entry is not None:
        server = app_server()
        if server.serves(full_env) and server.lock.acquire(blocking=False):
            try:
                note("warm", cmd)
                return server.run(cmd, entry, full_env, os.fspath(cwd or os.getcwd()), timeout)
            finally:
                server.lock.release()
        note(f"cold ({' '.join(sorted(differing_variables(full_env, server.env)))})", cmd)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def note(start: str, cmd: list[str]) -> None:
    """TRENDGEN_TEST_APPS_LOG=FILE: a line per app start, warm, or cold and the variables that differed."""
    if log := os.environ.get("TRENDGEN_TEST_APPS_LOG"):
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{start} {Path(cmd[0]).name} {' '.join(cmd[1:3])[:100]}\n")
