"""trend.precision: 32, bf16 (autocast), int8 (ONNX Runtime, dynamic quantization), auto for the CLIP towers.

Each precision embeds images and captions close to fp32; the ONNX files are built once per model folder and
reused, and rebuilt when the folder changes; a model the exporter cannot export falls back to torch with a
record; the resolved precision is in the stage keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.design import base_overrides, compose_design, make_tiny_clip, write_looks

from trendgen.errors import TrendgenError
from trendgen.identity import folder_identity
from trendgen.inference.clip_forward import embed_files
from trendgen.inference.precision import ClipTowers, cpu_bf16_flags, resolve_precision
from trendgen.inference.text_cache import embed_texts
from trendgen.model.build import load_saved
from trendgen.recipes.design import run_design

CAPTIONS = ["a red striped dress", "a blue floral skirt", "a black coat", "a green plaid shirt", "a dress"]
# min cosine to fp32 on the tiny random model, measured on an AVX512-BF16/AMX CPU: bf16 0.99999 (images) and
# 0.99997 (captions), int8 0.99991 and 0.99964; the bounds leave room for other CPUs' kernels
MIN_COSINE = {"bf16": 0.99, "int8": 0.995}
EMBED_TO_DESCRIBE = "design.stages=[embed,cluster,describe]"


@pytest.fixture(scope="module")
def looks(tmp_path_factory):
    return write_looks(tmp_path_factory.mktemp("precision_looks") / "looks", n=12)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("precision_model") / "model")


def towers(folder: Path, precision: str, cache: Path) -> ClipTowers:
    clip = load_saved(folder)
    return ClipTowers(lambda: clip, precision, folder_identity(folder), cache)


def embed_both(folder: Path, looks: Path, run: ClipTowers):
    _, tokenizer, processor = load_saved(folder)
    image, text = run.tower("image"), run.tower("text")
    paths = sorted(looks.glob("*.png"))
    images, used, _ = embed_files(image.model, processor, paths, 4, 0, precision=image.autocast)
    assert len(used) == len(paths)
    texts = embed_texts(text.model, tokenizer, CAPTIONS, batch_size=2, precision=text.autocast)
    return images, texts, image, text


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).min())  # rows are L2-normalised


def test_each_precision_embeds_images_and_captions_close_to_fp32(tmp_path, tiny, looks):
    ref_images, ref_texts, _, _ = embed_both(tiny, looks, towers(tiny, "32", tmp_path / "cache"))
    for precision in ("bf16", "int8"):
        images, texts, image, text = embed_both(tiny, looks, towers(tiny, precision, tmp_path / "cache"))
        runtime = "onnxruntime" if precision == "int8" else "torch"
        for tower in (image, text):
            assert tower.record == {
                "precision": precision,
                "runtime": runtime,
                "device": "cpu",
                "fallback_reason": None,
            }
        assert min_cosine(images, ref_images) >= MIN_COSINE[precision], precision
        assert min_cosine(texts, ref_texts) >= MIN_COSINE[precision], precision
        assert images.dtype == texts.dtype == np.float32
        if precision == "int8":
            assert not np.array_equal(images, ref_images)  # ONNX Runtime ran, not torch fp32


def test_auto_is_bf16_on_a_cpu_with_native_bf16_and_32_elsewhere():
    import torch

    resolved, why = resolve_precision("auto", torch.device("cpu"))
    assert resolved == ("bf16" if cpu_bf16_flags() else "32"), why
    assert resolve_precision(32, torch.device("cpu"))[0] == "32"  # Hydra reads `32` as an int
    with pytest.raises(TrendgenError, match=r"trend\.precision"):
        resolve_precision("fp8", torch.device("cpu"))


def onnx_files(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in (cache / "onnx").rglob("*.onnx")}


def manifest(out: Path, stage: str) -> dict:
    return json.loads((out / stage / "manifest.json").read_text())


def test_int8_exports_once_per_model_folder_and_again_when_it_changes(tmp_path, looks):
    model = make_tiny_clip(tmp_path / "model")
    cache = tmp_path / "cache"

    def design(out: str) -> dict:
        cfg = [*base_overrides(tmp_path, model, looks, out=out), EMBED_TO_DESCRIBE, "trend.precision=int8"]
        return run_design(compose_design([*cfg, "design.reuse=false"]))  # every stage runs

    first = design("first")
    assert first["precision"]["requested"] == "int8" and first["precision"]["resolved"] == "int8"
    for stage in ("embed", "describe"):
        assert first["precision"]["stages"][stage]["runtime"] == "onnxruntime"
        assert first["precision"]["stages"][stage]["precision"] == "int8"
        assert manifest(tmp_path / "first", stage)["onnx"]["status"] == "built"
    built = onnx_files(cache)
    onnx_dir = manifest(tmp_path / "first", "embed")["onnx"]["dir"]
    assert len(built) == 2  # the int8 image and text towers, in one folder for this model

    second = design("second")  # the stages run again, the ONNX files are reused
    assert second["stage_status"]["embed"] == "ran"
    for stage in ("embed", "describe"):
        assert manifest(tmp_path / "second", stage)["onnx"]["status"] == "reused"
    assert onnx_files(cache) == built  # not one file rewritten
    first_rows = np.load(tmp_path / "first" / "embed" / "embeddings.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "second" / "embed" / "embeddings.npy"), first_rows)

    make_tiny_clip(model, seed=1)  # the same folder, new weights: a new export
    third = design("third")
    assert manifest(tmp_path / "third", "embed")["onnx"]["status"] == "built"
    assert third["precision"]["stages"]["embed"]["runtime"] == "onnxruntime"
    now = onnx_files(cache)
    assert len(now) == 4 and all(now[name] == mtime for name, mtime in built.items())
    assert manifest(tmp_path / "third", "embed")["onnx"]["dir"] != onnx_dir


def test_a_model_that_cannot_be_exported_falls_back_to_torch_with_a_record(tmp_path, looks, caplog):
    """xIELU's `expm1` has no ONNX symbolic in the TorchScript exporter: the image tower cannot export."""
    model = make_tiny_clip(tmp_path / "model", vision_act="xielu")
    cfg = [*base_overrides(tmp_path, model, looks), EMBED_TO_DESCRIBE, "trend.precision=int8"]
    with caplog.at_level("WARNING", logger="trendgen.inference.precision"):
        trend = run_design(compose_design(cfg))
    image = trend["precision"]["stages"]["embed"]
    fallback = "bf16" if cpu_bf16_flags() else "32"
    assert image["precision"] == fallback and image["runtime"] == "torch"
    assert "cannot export the image tower" in image["fallback_reason"]
    assert "expm1" in image["fallback_reason"]
    assert manifest(tmp_path / "out", "embed")["onnx"]["status"] == "failed"
    lines = [r.getMessage() for r in caplog.records if "cannot export" in r.getMessage()]
    assert len(lines) == 1 and "runs on torch" in lines[0]
    # the text tower of the same model exports: it ran int8
    assert trend["precision"]["stages"]["describe"]["runtime"] == "onnxruntime"
    # the failure is recorded beside the model's ONNX files: the next run says why without exporting again
    (record,) = (tmp_path / "cache" / "onnx").rglob("image.json")
    assert json.loads(record.read_text())["ok"] is False
    again = towers(model, "int8", tmp_path / "cache").tower("image")
    assert again.record["runtime"] == "torch" and "recorded in" in again.record["fallback_reason"]


def test_the_precision_is_in_the_stage_keys(tmp_path, tiny, looks):
    def design(precision: str) -> dict:
        cfg = [*base_overrides(tmp_path, tiny, looks), EMBED_TO_DESCRIBE, f"trend.precision={precision}"]
        return run_design(compose_design(cfg))

    fp32 = design("32")
    assert fp32["precision"]["stages"]["embed"]["precision"] == "32"
    bf16 = design("bf16")  # the same run dir: the embeddings of another precision are not reused
    assert {bf16["stage_status"][s] for s in ("embed", "cluster", "describe")} == {"ran"}
    assert bf16["precision"]["stages"]["embed"]["precision"] == "bf16"
    assert design("bf16")["stage_status"]["embed"] == "reused"


@pytest.mark.slow  # ddp_spawn of two ranks; the one-process int8 path is in make test
def test_int8_on_two_ranks_gives_the_one_process_int8_embeddings(tmp_path, tiny, looks):
    """The ONNX model pickles into spawned ranks (Lightning predict), which open their own sessions."""
    from trendgen.design.embed_distributed import embed_files_distributed
    from trendgen.design.embed_parts import PartStore

    image = towers(tiny, "int8", tmp_path / "cache").tower("image")
    processor = load_saved(tiny)[2]
    paths = sorted(looks.glob("*.png"))
    expected, used, _ = embed_files(image.model, processor, paths, 2, 0, precision=image.autocast)
    store = PartStore.for_job(tmp_path / "parts", "key", part_size=4, n=len(paths))
    ranks = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn", "batch_size": 2, "num_workers": 0}
    got, got_used, _ = embed_files_distributed(image.model, processor, paths, store, precision="32", **ranks)
    assert got_used == used
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_auto_on_a_cpu_takes_what_it_measured_faster_and_measures_once(tmp_path):
    """On a CPU with native bf16, `auto` times the image tower in bf16 and fp32 once per machine and model
    and keeps the faster (bf16 only at 1.05x fp32 or more: never slower than fp32); a later run reads it."""
    import torch

    from trendgen.inference.precision import AUTO_BF16_MARGIN

    folder = make_tiny_clip(tmp_path / "model")
    clip = load_saved(folder)
    towers = ClipTowers(lambda: clip, "auto", ["model", 1], tmp_path / "cache", torch.device("cpu"))
    if not cpu_bf16_flags():
        assert towers.precision == "32" and not (tmp_path / "cache" / "precision").exists()
        return
    (kept,) = (tmp_path / "cache" / "precision").glob("*.json")
    record = json.loads(kept.read_text())
    faster = "bf16" if record["rates"]["bf16"] >= AUTO_BF16_MARGIN * record["rates"]["32"] else "32"
    assert towers.precision == record["choice"] == faster and "measured on this CPU" in towers.why

    def not_again():
        raise AssertionError("measured twice")

    again = ClipTowers(not_again, "auto", ["model", 1], tmp_path / "cache", torch.device("cpu"))
    assert again.precision == towers.precision


def test_the_image_rate_is_measured_once_per_machine_and_model(tmp_path):
    """`ClipTowers.image_rate`: the image tower's measured images/s, kept beside the precision record."""
    import torch

    clip = load_saved(make_tiny_clip(tmp_path / "model"))
    towers = ClipTowers(lambda: clip, "32", ["model", 2], tmp_path / "cache", torch.device("cpu"))
    rate = towers.image_rate()
    (kept,) = (tmp_path / "cache" / "precision").glob("*.json")
    assert rate == json.loads(kept.read_text())["rates"]["32"] > 0

    def not_again():
        raise AssertionError("measured twice")

    again = ClipTowers(not_again, "32", ["model", 2], tmp_path / "cache", torch.device("cpu"))
    assert again.image_rate() == rate
