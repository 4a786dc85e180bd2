"""The int8 files of `trend.precision=int8`: what the quantization makes of a tower, and when it is redone.

The image tower's patch embedding is exported as a MatMul (ONNX Runtime's ConvInteger is slower than its
float Conv) and every MatMul is quantized; a file made by another recipe is rebuilt, not reused.
"""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from helpers.design import make_tiny_clip

from trendgen.inference.onnx_runtime import PatchMatMul, ensure_tower, patch_convs_as_matmuls
from trendgen.model.build import load_saved


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return load_saved(make_tiny_clip(tmp_path_factory.mktemp("onnx_model") / "model"))[0]


@pytest.mark.parametrize("bias", [True, False])
def test_a_patch_matmul_gives_the_convolutions_output(bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, kernel_size=4, stride=4, bias=bias)
    for side in (16, 18):  # 18: the last two rows and columns fall outside every patch, as in the conv
        x = torch.randn(2, 3, side, side + 4)
        torch.testing.assert_close(PatchMatMul(conv)(x), conv(x), atol=1e-5, rtol=1e-5)


def test_only_patch_convolutions_are_swapped_and_only_inside_the_block():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, kernel_size=4, stride=4),  # a patch embedding
        torch.nn.Conv2d(8, 8, kernel_size=3, stride=1, padding=1),  # overlapping windows: kept
    )
    patch, other = model[0], model[1]
    with patch_convs_as_matmuls(model) as swapped:
        assert swapped == 1 and isinstance(model[0], PatchMatMul) and model[1] is other
    assert model[0] is patch and model[1] is other


def test_the_int8_image_tower_quantizes_its_matmuls_and_has_no_integer_convolution(tmp_path, tiny_model):
    record = ensure_tower(tiny_model, "image", tmp_path)
    assert record["status"] == "built" and record["int8_min_cosine"] > 0.99
    ops = {node.op_type for node in onnx.load(tmp_path / "image.int8.onnx").graph.node}
    assert "MatMulInteger" in ops  # the projections, the MLPs and the patch embedding
    assert not ops & {"ConvInteger", "Conv"}, ops
    assert isinstance(tiny_model.vision_model.embeddings.patch_embedding, torch.nn.Conv2d)  # left as it was


def test_int8_files_of_another_recipe_are_rebuilt(tmp_path, tiny_model):
    assert ensure_tower(tiny_model, "text", tmp_path)["status"] == "built"
    assert ensure_tower(tiny_model, "text", tmp_path)["status"] == "reused"
    record_path = tmp_path / "text.json"
    record = json.loads(record_path.read_text())
    del record["versions"]["recipe"]  # what a file of the first int8 recipe records
    record_path.write_text(json.dumps(record))
    assert ensure_tower(tiny_model, "text", tmp_path)["status"] == "built"
    assert "recipe" in json.loads(record_path.read_text())["versions"]
