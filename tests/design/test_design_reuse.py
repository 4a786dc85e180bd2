"""Stage reuse: a rerun with another llm or generator does not embed again; the caption cache is hit on a
second run; inputs that change rerun what depends on them; designs are never overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.design import base_overrides, compose_design, make_tiny_clip, write_looks
from PIL import Image

from trendgen.recipes.design import run_design

UP_TO_PROMPT = "design.stages=[embed,cluster,describe,prompt]"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reuse_inputs")
    return make_tiny_clip(tmp / "model"), write_looks(tmp / "looks", n=16)


def run(tmp, inputs, *extra, out="out"):
    model, looks = inputs
    return run_design(compose_design([*base_overrides(tmp, model, looks, out=out), *extra]))


def manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_rerun_with_another_llm_or_generator_does_not_embed_again(tmp_path, inputs, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    first = run(tmp_path, inputs, "llm=template", "generator=none", UP_TO_PROMPT)
    embed_dir = tmp_path / "out" / "embed"
    before = manifest(embed_dir), (embed_dir / "embeddings.npy").stat().st_mtime_ns
    assert first["stage_status"]["embed"] == "ran"

    second = run(tmp_path, inputs, "llm=openai", "generator=none", UP_TO_PROMPT)
    assert second["stage_status"] == {
        "embed": "reused",
        "cluster": "reused",
        "describe": "reused",
        "prompt": "ran",
    }
    assert (manifest(embed_dir), (embed_dir / "embeddings.npy").stat().st_mtime_ns) == before
    assert second["prompt"]["fallback_reason"] == "OPENAI_API_KEY is not set"
    assert second["captions"] == first["captions"]

    third = run(tmp_path, inputs, "llm=template", "generator=tiny")
    assert third["stage_status"]["embed"] == "reused"
    assert third["stage_status"]["generate"] == "ran"
    assert manifest(embed_dir) == before[0]


def test_fresh_run_dir_reuses_finished_stages_from_the_store(tmp_path, inputs):
    run(tmp_path, inputs, "generator=none", UP_TO_PROMPT, out="first")
    again = run(tmp_path, inputs, "generator=none", UP_TO_PROMPT, out="second")
    assert set(again["stage_status"].values()) == {"reused"}
    first_npy = tmp_path / "first" / "embed" / "embeddings.npy"
    second_npy = tmp_path / "second" / "embed" / "embeddings.npy"
    assert second_npy.read_bytes() == first_npy.read_bytes()
    assert manifest(second_npy.parent)["key"] == manifest(first_npy.parent)["key"]


def test_reuse_off_or_changed_images_run_the_stage_again(tmp_path, inputs):
    model, looks = inputs
    own_looks = shutil.copytree(looks, tmp_path / "looks")
    first = run(tmp_path, (model, own_looks), "generator=none", UP_TO_PROMPT)
    assert first["images"]["total"] == 16
    forced = run(tmp_path, (model, own_looks), "generator=none", UP_TO_PROMPT, "design.reuse=false")
    assert set(forced["stage_status"].values()) == {"ran"}
    Image.new("RGB", (32, 32), (250, 250, 0)).save(own_looks / "new_look.png")
    changed = run(tmp_path, (model, own_looks), "generator=none", UP_TO_PROMPT)
    assert changed["stage_status"]["embed"] == "ran"
    assert changed["images"]["total"] == 17


def test_caption_cache_is_hit_on_a_second_run(tmp_path, inputs):
    stages = "design.stages=[embed,cluster,describe]"
    run(tmp_path, inputs, stages, "trend.clusters=2")
    describe_dir = tmp_path / "out" / "describe"
    first = manifest(describe_dir)
    (cached,) = (tmp_path / "cache" / "caption_embeddings").iterdir()
    cached_mtime = cached.stat().st_mtime_ns
    bank_size = json.loads((describe_dir / "captions.json").read_text())["bank_size"]
    assert first["text_cache_hit"] is False and bank_size >= 200
    assert first["texts_embedded"] > bank_size  # the bank, then the look captions it composed

    again = run(tmp_path, inputs, stages, "trend.clusters=2", "design.reuse=false")  # describe runs again
    assert again["stage_status"]["describe"] == "ran"
    second = manifest(describe_dir)
    assert second["text_cache_hit"] is True
    assert second["texts_embedded"] == 0  # every text came from the cache, which was left untouched
    assert cached.stat().st_mtime_ns == cached_mtime
    assert second["content"] == first["content"]  # the same ranked captions, byte for byte

    other_trend = run(tmp_path, inputs, stages, "trend.clusters=3")  # same model and bank, another target
    third = manifest(describe_dir)
    assert other_trend["stage_status"]["describe"] == "ran"
    assert (
        third["text_cache_hit"] is True
    )  # the bank came from the cache; only new look captions were embedded

    bank = tmp_path / "bank.yaml"
    # new garment captions (in words the model knows: a from-scratch model leaves out words it never learnt)
    bank.write_text("garment:\n  - coat dress\n  - dress coat\ncolour:\n  - burgundy\n  - teal\n")
    own = [f"captions.bank={bank}", "captions.per_facet=1", "captions.look_template='a {colour} {garment}'"]
    other = run(tmp_path, inputs, stages, *own)
    assert manifest(describe_dir)["text_cache_hit"] is False  # new texts
    assert other["look"]["text"] in {
        f"a {c} {g}" for c in ("burgundy", "teal") for g in ("coat dress", "dress coat")
    }
    assert {c["text"] for c in other["captions"][1:]} == {"coat dress", "dress coat", "burgundy", "teal"}
    assert [len(rows) for rows in other["facets"].values()] == [1, 1]


def test_rerun_of_generate_never_overwrites_a_design(tmp_path, inputs):
    first = run(tmp_path, inputs, "generator=tiny")
    old = {d["path"]: Path(d["path"]).read_bytes() for d in first["designs"]}
    second = run(tmp_path, inputs, "generator=tiny", "design.reuse=false")  # draw the same designs again
    assert second["stage_status"]["generate"] == "ran"
    for path, content in old.items():
        assert Path(path).read_bytes() == content
    new_paths = {d["path"] for d in second["designs"]}
    assert new_paths.isdisjoint(old) and len(new_paths) == 2
    assert all(p.endswith("-2.png") for p in new_paths)
