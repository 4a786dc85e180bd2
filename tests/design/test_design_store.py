"""The stage store cannot lie: runs never rewrite each other's results, a damaged entry is dropped and
recomputed, a record cannot name a file outside its folder, and concurrent savers and restorers always see
whole entries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.design import base_overrides, compose_design, make_tiny_clip, write_looks
from helpers.ranks import process_context

from trendgen.design.store import MANIFEST, StageDir
from trendgen.files import sha256_file
from trendgen.recipes.design import run_design

UP_TO_CLUSTER = "design.stages=[embed,cluster]"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("store_inputs")
    return make_tiny_clip(tmp / "model"), write_looks(tmp / "looks", n=24)


def run(tmp: Path, inputs, *extra: str, out: str) -> dict:
    model, looks = inputs
    overrides = [*base_overrides(tmp, model, looks, out=out), f"design.store={tmp / 'store'}", UP_TO_CLUSTER]
    return run_design(compose_design([*overrides, *extra]))


def clusters(tmp: Path, out: str) -> dict:
    return json.loads((tmp / out / "cluster" / "clusters.json").read_text())


def test_a_rerun_with_other_settings_never_rewrites_another_runs_results(tmp_path, inputs):
    run(tmp_path, inputs, "trend.clusters=4", out="a")
    restored = run(tmp_path, inputs, "trend.clusters=4", out="a2")
    assert restored["stage_status"] == {"embed": "reused", "cluster": "reused"}
    run(tmp_path, inputs, "trend.clusters=3", out="a")  # rerun a/ in place with another k
    assert clusters(tmp_path, "a")["k"] == 3
    assert clusters(tmp_path, "a2")["k"] == 4  # the restored copy is its own
    fresh = run(tmp_path, inputs, "trend.clusters=4", out="b")
    assert fresh["stage_status"]["cluster"] == "reused" and fresh["k"] == 4  # the store's k=4 entry is whole
    assert (tmp_path / "a" / "embed" / "embeddings.npy").stat().st_ino != (
        tmp_path / "a2" / "embed" / "embeddings.npy"
    ).stat().st_ino


def test_a_damaged_entry_is_dropped_and_the_stage_runs_again(tmp_path, inputs, caplog):
    first = run(tmp_path, inputs, "trend.clusters=2", out="a")
    objects = sorted((tmp_path / "store" / "objects").rglob("*"))
    for obj in (o for o in objects if o.is_file()):  # every object cut in half, as a full disk leaves it
        obj.chmod(0o644)
        obj.write_bytes(obj.read_bytes()[: obj.stat().st_size // 2])
    again = run(tmp_path, inputs, "trend.clusters=2", out="b")
    assert again["stage_status"] == {"embed": "ran", "cluster": "ran"}
    assert again["clusters"] == first["clusters"]
    assert "dropped the damaged entry" in caplog.text
    third = run(tmp_path, inputs, "trend.clusters=2", out="c")  # the recomputed entry is whole again
    assert third["stage_status"] == {"embed": "reused", "cluster": "reused"}


def test_an_edited_file_in_the_run_folder_is_not_reused(tmp_path, inputs):
    run(tmp_path, inputs, "trend.clusters=2", "design.store=null", out="a")
    labels = tmp_path / "a" / "cluster" / "labels.npy"
    np.save(labels, np.zeros(24, dtype=np.int64))  # someone edits a result in place
    again = run(tmp_path, inputs, "trend.clusters=2", "design.store=null", out="a")
    assert again["stage_status"]["cluster"] == "ran"


def test_a_store_entry_naming_a_file_outside_its_folder_writes_nothing_there(tmp_path):
    store, victim = tmp_path / "store", tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    author = StageDir("embed", tmp_path / "author" / "embed", "k1", store)
    partial = author.prepare()
    (partial / "index.json").write_text("{}")
    author.commit(partial, ["index.json"])
    entry = json.loads((store / "embed" / "k1.json").read_text())
    digest = entry["digests"].pop("index.json")
    entry["digests"]["../../victim.txt"] = digest
    entry["files"] = ["../../victim.txt"]
    (store / "embed" / "k1.json").write_text(json.dumps(entry))
    reader = StageDir("embed", tmp_path / "reader" / "run" / "embed", "k1", store)
    assert not reader.is_fresh()
    assert victim.read_text() == "the user's file\n" and victim.stat().st_nlink == 1


def _save_and_restore(store: str, worker: int, rounds: int, out: str) -> None:
    """Commit the same key over and over while restoring it into a fresh folder each round."""
    for i in range(rounds):
        writer = StageDir("cluster", Path(out) / f"w{worker}" / "cluster", "key", Path(store))
        partial = writer.prepare()
        np.save(partial / "labels.npy", np.arange(20_000) % 7)
        (partial / "clusters.json").write_text(json.dumps({"k": 7}))
        writer.commit(partial, ["labels.npy", "clusters.json"])
        reader = StageDir("cluster", Path(out) / f"r{worker}-{i}" / "cluster", "key", Path(store))
        assert reader.is_fresh(), f"worker {worker} round {i}: no entry to restore"
        manifest = json.loads((reader.path / MANIFEST).read_text())
        for name, digest in manifest["digests"].items():
            assert sha256_file(reader.path / name) == digest


@pytest.mark.timeout(120)
def test_concurrent_saves_and_restores_always_see_a_whole_entry(tmp_path):
    context = process_context()
    workers = [
        context.Process(target=_save_and_restore, args=(str(tmp_path / "store"), w, 40, str(tmp_path)))
        for w in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(100)
    assert [w.exitcode for w in workers] == [0, 0, 0]
