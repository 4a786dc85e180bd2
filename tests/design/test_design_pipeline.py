"""The whole design pipeline on CPU: a tiny saved CLIP, a trending folder with bad files, the tiny diffusers
pipeline (2 steps), the template prompt writer; then trend.json, prompt.txt, the designs and the report."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers.design import base_overrides, compose_design, make_tiny_clip, make_tiny_siglip, write_looks
from PIL import Image
from transformers import AutoTokenizer

from trendgen.errors import TrendgenError
from trendgen.recipes.design import run_design


@pytest.fixture(scope="module")
def design_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("design")
    model = make_tiny_clip(tmp / "model")
    looks = write_looks(tmp / "looks", n=20)
    (looks / "nested").mkdir()
    (looks / "nested" / "empty.png").write_bytes(b"")
    (looks / "nested" / "page.jpg").write_text("<html>not a photo</html>")
    Image.new("RGB", (40, 30), (10, 200, 10)).save(looks / "nested" / "green.png")
    cfg = compose_design([*base_overrides(tmp, model, looks), "trend.num_workers=2"])  # decode in workers
    trend = run_design(cfg)
    return cfg, trend, tmp / "out"


def test_trend_json_schema(design_run):
    _, trend, out = design_run
    assert json.loads((out / "trend.json").read_text()) == trend
    images = trend["images"]
    assert (images["total"], images["used"]) == (23, 21)  # 20 looks + 1 good + 2 bad, found recursively
    reasons = {Path(s["path"]).name: s["reason"] for s in images["skipped"]}
    assert set(reasons) == {"empty.png", "page.jpg"}
    assert "empty" in reasons["empty.png"] and "not an image" in reasons["page.jpg"]
    clusters = trend["clusters"]
    assert [c["id"] for c in clusters] == [0, 1]
    assert sum(c["size"] for c in clusters) == 21
    assert sum(c["share"] for c in clusters) == pytest.approx(1.0, abs=1e-5)
    assert trend["dominant_cluster"] == max(clusters, key=lambda c: c["size"])["id"]
    assert trend["target_cluster"] == trend["dominant_cluster"]  # trend.target=dominant
    assert all(
        1 <= len(c["exemplars"]) <= 3 and all(Path(p).is_file() for p in c["exemplars"]) for c in clusters
    )
    captions = trend["captions"]
    assert len(captions) == 12 and set(captions[0]) == {"text", "facet", "score"}
    assert captions[0]["facet"] == "look" and captions[0]["text"] == trend["look"]["text"]  # the look leads
    scores = [c["score"] for c in captions[1:]]
    assert scores == sorted(scores, reverse=True)  # then the best captions of the bank, best first
    assert all(len(rows) == 3 for rows in trend["facets"].values())
    assert {"garment", "colour", "pattern", "material"} <= set(trend["facets"])
    assert trend["prompt"]["source"] == "template" and trend["prompt"]["fallback_reason"] is None
    designs = trend["designs"]
    assert [d["seed"] for d in sorted(designs, key=lambda d: d["seed"])] == [0, 1]
    assert [d["score"] for d in designs] == sorted((d["score"] for d in designs), reverse=True)
    assert all(Path(d["path"]).parent == out / "designs" for d in designs)
    assert len(trend["config_hash"]) == 16
    assert set(trend["stage_seconds"]) == {"embed", "cluster", "describe", "prompt", "generate", "report"}


def test_embeddings_are_normalised_and_indexed(design_run):
    _, _, out = design_run
    embeddings = np.load(out / "embed" / "embeddings.npy")
    index = json.loads((out / "embed" / "index.json").read_text())
    assert embeddings.dtype == np.float32 and embeddings.shape == (21, 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert len(index["paths"]) == 21 and len(set(index["paths"])) == 21


def test_prompt_is_template_of_best_facets_within_77_generator_tokens(design_run):
    _, trend, out = design_run
    text = trend["prompt"]["text"]
    assert (out / "prompt.txt").read_text() == text + "\n"
    look, facets = trend["look"]["text"], trend["facets"]
    assert look == "a {} {} {}".format(*(facets[f][0]["text"] for f in ("colour", "pattern", "garment")))
    assert text.startswith(f"{look}, {facets['material'][0]['text']}, ")
    source = json.loads((out / "generate" / "designs.json").read_text())["source"]
    assert (Path(source) / "model_index.json").is_file()  # the tiny pipeline was saved, then loaded from disk
    tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer")
    assert len(tokenizer(text)["input_ids"]) <= 77


def test_design_pngs_carry_prompt_seed_and_config_hash(design_run):
    _, trend, _ = design_run
    for design in trend["designs"]:
        with Image.open(design["path"]) as image:
            assert image.format == "PNG" and image.size == (64, 64)
            chunks = image.text
        assert chunks["prompt"] == trend["prompt"]["text"]
        assert chunks["seed"] == str(design["seed"])
        assert chunks["config_hash"] == trend["config_hash"]


class ImageCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs.get("src", ""))
        if tag in {"link", "script"}:
            self.links.append(attrs.get("href") or attrs.get("src") or "")


def test_report_is_self_contained_with_valid_pngs(design_run):
    _, trend, out = design_run
    page = (out / "report.html").read_text()
    parser = ImageCollector()
    parser.feed(page)
    # shares chart, projection, one montage per cluster, every design, the trend's montage beside the designs
    assert len(parser.sources) == 2 + len(trend["clusters"]) + len(trend["designs"]) + 1
    assert parser.links == []
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            assert image.format == "PNG"
    assert trend["prompt"]["text"].replace("&", "&amp;") in page
    assert trend["captions"][0]["text"] in page


def test_corrupt_model_weights_are_a_user_error(design_run, tmp_path):
    cfg, _, _ = design_run
    corrupt = shutil.copytree(cfg.model.name_or_path, tmp_path / "corrupt")
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    overrides = base_overrides(tmp_path, corrupt, Path(cfg.trend.images))
    with pytest.raises(TrendgenError, match=r"could not load a CLIP model from .*corrupt"):
        run_design(compose_design(overrides))


def test_text_file_of_paths_with_a_missing_file(design_run, tmp_path):
    from trendgen.inference.clip_forward import embed_files
    from trendgen.model.build import load_saved
    from trendgen.trends.image_files import discover_images

    cfg, _, _ = design_run
    looks = Path(cfg.trend.images)
    shutil.copy(looks / "look_00001.png", tmp_path / "relative.png")
    listing = tmp_path / "trending.txt"
    listing.write_text(f"# this season\n{looks / 'look_00000.png'}\n\nrelative.png\ngone.png\n")
    files = discover_images(listing)
    assert files == [looks / "look_00000.png", tmp_path / "relative.png", tmp_path / "gone.png"]
    model, _, image_processor = load_saved(cfg.model.name_or_path)
    embeddings, used, skipped = embed_files(model, image_processor, files, batch_size=2, num_workers=0)
    assert embeddings.shape == (2, 16) and used == [0, 1]
    assert [i for i, _ in skipped] == [2] and "cannot read" in skipped[0][1]


def test_a_one_facet_bank_of_the_users_own_works_with_the_default_template(design_run, tmp_path):
    cfg, _, _ = design_run
    bank = tmp_path / "garments.yaml"
    bank.write_text("garment:\n  - dress\n  - coat\n  - shirt\n  - sneaker\n")
    overrides = [
        *base_overrides(tmp_path, Path(cfg.model.name_or_path), Path(cfg.trend.images)),
        f"captions.bank={bank}",
        "generator=none",
        "design.stages=[embed,cluster,describe,prompt]",
    ]
    trend = run_design(compose_design(overrides))
    assert trend["look"]["text"] in {"a dress", "a coat", "a shirt", "a sneaker"}
    assert list(trend["facets"]) == ["garment"]
    assert trend["prompt"]["text"].startswith(trend["look"]["text"])


def test_a_siglip_folder_runs_the_design_pipeline_as_its_own_library_embeds(design_run, tmp_path):
    """SigLIP: images embedded as transformers' SiglipModel embeds them, captions ranked with SigLIP's
    full-length padding, a look and a prompt."""
    import torch
    from transformers import AutoModel, AutoProcessor

    cfg, _, _ = design_run
    model_dir = make_tiny_siglip(tmp_path / "siglip")
    overrides = [
        *base_overrides(tmp_path, model_dir, Path(cfg.trend.images)),
        "generator=none",
        "design.stages=[embed,cluster,describe,prompt]",
    ]
    trend = run_design(compose_design(overrides))
    assert trend["look"]["text"] and trend["prompt"]["text"].startswith(trend["look"]["text"])
    out = tmp_path / "out" / "embed"
    embeddings = np.load(out / "embeddings.npy")
    first = json.loads((out / "index.json").read_text())["paths"][0]
    model, processor = AutoModel.from_pretrained(model_dir).eval(), AutoProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        pixels = processor(images=[Image.open(first).convert("RGB")], return_tensors="pt")["pixel_values"]
        own = torch.nn.functional.normalize(
            model.get_image_features(pixel_values=pixels).pooler_output, dim=-1
        )
    np.testing.assert_allclose(embeddings[0], own[0].numpy(), atol=1e-5)
