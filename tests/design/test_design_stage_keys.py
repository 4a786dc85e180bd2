"""Stage keys come from what the upstream stages wrote, the package version and the model's revision; the
embed stage picks up where a killed run stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from helpers.design import DESIGN_BIN, base_overrides, compose_design, make_tiny_clip, write_looks
from helpers.llm_server import ANSWER, ChatHandler, ScriptedServer
from PIL import Image

from trendgen.design import store as stage_cache
from trendgen.inference.clip_forward import embed_files
from trendgen.model.build import load_saved
from trendgen.recipes.design import run_design
from trendgen.trends.periods import trend_periods

UP_TO_PROMPT = "design.stages=[embed,cluster,describe,prompt]"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("key_inputs")
    return make_tiny_clip(tmp / "model"), write_looks(tmp / "looks", n=16)


def run(tmp, inputs, *extra):
    model, looks = inputs
    return run_design(compose_design([*base_overrides(tmp, model, looks), *extra]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerOnPort(ScriptedServer):
    """The scripted OpenAI-compatible server, started later on a port the config already names."""

    def __init__(self, port: int) -> None:
        ThreadingHTTPServer.__init__(self, ("127.0.0.1", port), ChatHandler)
        self.script, self.requests = [], []


def test_designs_are_redrawn_when_the_prompt_they_came_from_changes(tmp_path, inputs, monkeypatch):
    """LLM down: the template prompt and designs drawn from it; LLM up: a new prompt, new designs from it."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    port = free_port()
    llm = ["llm=openai", f"llm.base_url=http://127.0.0.1:{port}/v1", "llm.max_retries=0", "generator=tiny"]
    down = run(tmp_path, inputs, *llm)  # the same config both times: only the server's state differs
    assert down["prompt"]["source"] == "template" and down["stage_status"]["generate"] == "ran"

    server = ServerOnPort(port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        up = run(tmp_path, inputs, *llm)
    finally:
        server.shutdown()
        server.server_close()
    assert up["prompt"]["source"] == "openai" and up["prompt"]["text"] == ANSWER
    assert up["stage_status"] == {
        "embed": "reused",
        "cluster": "reused",
        "describe": "reused",
        "prompt": "ran",
        "generate": "ran",
        "report": "ran",
    }
    prompt_txt = (tmp_path / "out" / "prompt.txt").read_text().strip()
    for design in up["designs"]:
        assert Image.open(design["path"]).text["prompt"] == prompt_txt == ANSWER


def test_a_new_package_version_reruns_every_stage(tmp_path, inputs, monkeypatch):
    first = run(tmp_path, inputs, "generator=none", UP_TO_PROMPT)
    assert set(first["stage_status"].values()) == {"ran"}
    assert set(run(tmp_path, inputs, "generator=none", UP_TO_PROMPT)["stage_status"].values()) == {"reused"}
    monkeypatch.setattr(stage_cache, "__version__", "99.0.0")
    upgraded = run(tmp_path, inputs, "generator=none", UP_TO_PROMPT)
    assert set(upgraded["stage_status"].values()) == {"ran"}
    manifest = json.loads((tmp_path / "out" / "embed" / "manifest.json").read_text())
    assert manifest["version"] == "99.0.0"


def fake_hub_snapshot(cache: Path, repo: str, commit: str, ref: str = "main") -> None:
    """The layout huggingface_hub keeps on disk for a downloaded revision of `repo`."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (folder / "snapshots" / commit / "config.json").write_text("{}")
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / ref).write_text(commit)


def resolve_in(cache: Path, *args: str) -> str:
    code = "import sys; from trendgen.hub import resolved_revision; print(resolved_revision(*sys.argv[1:]))"
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_a_hub_id_is_keyed_by_the_revision_it_resolves_to(tmp_path):
    old, new = "a" * 40, "b" * 40
    fake_hub_snapshot(tmp_path, "org/fashion-clip", old)
    assert resolve_in(tmp_path, "org/fashion-clip") == old
    fake_hub_snapshot(tmp_path, "org/fashion-clip", new)  # the hub moved main; the cache followed
    assert resolve_in(tmp_path, "org/fashion-clip") == new
    assert resolve_in(tmp_path, "org/fashion-clip", old) == old  # model.revision pins the old commit
    assert resolve_in(tmp_path, "org/never-downloaded") == "unresolved:main"


def embed_cli(tmp: Path, model: Path, looks: Path, out: str) -> list[str]:
    overrides = [
        *base_overrides(tmp, model, looks, out=out),
        "design.stages=[embed]",
        "design.store=null",  # the uninterrupted run embeds everything itself
        "trend.batch_size=4",
        "trend.part_batches=1",
        "trend.precision=32",  # compared with the fp32 one-process loop below
    ]
    return [str(DESIGN_BIN), f"hydra.run.dir={tmp / ('hydra_' + out)}", *overrides]


def test_embed_killed_halfway_resumes_from_its_parts(tmp_path, inputs):
    model, _ = inputs
    looks = write_looks(tmp_path / "many_looks", n=480)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parts = tmp_path / "killed" / "embed.parts"
    proc = subprocess.Popen(embed_cli(tmp_path, model, looks, "killed"), env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not len(list(parts.glob("part-*.npz"))) >= 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list(parts.glob("part-*.npz")))
    assert 3 <= written < 120, "the run was not killed halfway"

    resumed = subprocess.run(embed_cli(tmp_path, model, looks, "killed"), env=env, cwd=tmp_path, check=True)
    assert resumed.returncode == 0
    trend = json.loads((tmp_path / "killed" / "trend.json").read_text())
    assert written * 4 <= trend["images"]["reused_from_parts"] < 480
    assert trend["images"]["used"] == 480 and not parts.exists()

    # the batches of a run never stopped (4 files each, from the first file on), in one process
    index = json.loads((tmp_path / "killed" / "embed" / "index.json").read_text())
    clip_model, _, image_processor = load_saved(model)
    files = list(trend_periods(compose_design([f"trend.images={looks}"]).trend)[-1].files)
    whole, used, _ = embed_files(clip_model, image_processor, files, batch_size=4, num_workers=0)
    assert index["paths"] == [str(files[i]) for i in used]
    np.testing.assert_allclose(np.load(tmp_path / "killed" / "embed" / "embeddings.npy"), whole, atol=1e-6)
