"""CLIP towers on ONNX Runtime with dynamic int8 quantization (`trend.precision=int8`, CPU).

Each tower (`image`: `get_image_features`, `text`: `get_text_features`) is exported once per model with the
TorchScript exporter (`dynamo=False`: a traced graph with dynamic batch and sequence axes), checked against
torch on inputs of another shape than the traced ones, and quantized dynamically (`QUANTIZATION`: int8
weights, activations quantized at run time) into `<cache_dir>/onnx/<hash of the model's identity>/`:
`<tower>.int8.onnx` and `<tower>.json`, the record (what was built, with which versions and recipe and how
close to torch, or why the export failed); the fp32 graph is a temporary file. The model identity is the
stage keys' (a folder's files, or a hub id at its revision), so a changed model folder gets a fresh export
and an unchanged one reuses its files; so does a change of library versions or of `RECIPE`. A failed
export is recorded too, so the next run with the same model and versions says why at once instead of trying
again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trendgen.errors import first_line
from trendgen.identity import stable_hash
from trendgen.inference.clip_forward import features_of
from trendgen.model.families import text_inputs

log = logging.getLogger(__name__)

TOWERS = ("image", "text")
OPSET = 17
EXPORT_TOLERANCE = 1e-3  # 1 - min cosine of the fp32 graph to torch before quantization counts as broken
# The MatMuls only, weights per output channel. ONNX Runtime's ConvInteger is slower than its float Conv (a
# quantized patch embedding cost the ViT-B/32 image tower 13% of its int8 speed); the patch embedding is
# exported as a MatMul instead (`PatchMatMul`), which is quantized (docs/BENCHMARKS.md).
QUANTIZATION = {"op_types_to_quantize": ["MatMul"], "per_channel": True, "weight_type": "QInt8"}
RECIPE = {**QUANTIZATION, "patch_convs": "matmul"}  # what the int8 files are made with, in their record


class OnnxExportError(RuntimeError):
    """A tower that could not be exported (or whose exported graph disagrees with torch)."""


def onnx_folder(cache_dir: str | Path, identity: Any) -> Path:
    return Path(str(cache_dir)).expanduser() / "onnx" / stable_hash(identity)


def versions() -> dict[str, Any]:
    """What an int8 file depends on besides the model: the libraries and the quantization recipe."""
    import onnx
    import onnxruntime

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "recipe": RECIPE,
    }


class _ImageTower(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return features_of(self.model.get_image_features(pixel_values=pixel_values))


class _TextTower(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model.get_text_features(**text_inputs(self.model, input_ids, attention_mask))
        return features_of(out)


class PatchMatMul(torch.nn.Module):
    """A Conv2d whose stride is its kernel (a ViT's patch embedding) as one MatMul over the flattened patches:
    the same output, as a MatMul that dynamic quantization makes int8."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.patch = tuple(conv.kernel_size)
        self.register_buffer("weight", conv.weight.detach().flatten(1).t().contiguous())  # [c*ph*pw, out]
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (b, c, h, w), (ph, pw) = x.shape, self.patch
        rows, cols = h // ph, w // pw
        x = x[:, :, : rows * ph, : cols * pw].reshape(b, c, rows, ph, cols, pw)
        x = x.permute(0, 2, 4, 1, 3, 5).reshape(b, rows * cols, c * ph * pw) @ self.weight
        if self.bias is not None:
            x = x + self.bias
        return x.transpose(1, 2).reshape(b, -1, rows, cols)

    @staticmethod
    def fits(module: torch.nn.Module) -> bool:
        return (
            type(module) is torch.nn.Conv2d
            and tuple(module.stride) == tuple(module.kernel_size)
            and tuple(module.dilation) == (1, 1)
            and module.padding in ((0, 0), "valid")
            and module.groups == 1
        )


@contextmanager
def patch_convs_as_matmuls(module: torch.nn.Module) -> Iterator[int]:
    """Swaps every patch-embedding Conv2d of `module` for a `PatchMatMul` while the block runs (the export);
    yields how many it swapped."""
    swapped = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if PatchMatMul.fits(child)
    ]
    for parent, name, child in swapped:
        setattr(parent, name, PatchMatMul(child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def example_inputs(config: Any, tower: str, batch: int, extra: int = 0) -> dict[str, torch.Tensor]:
    """Inputs of one tower: `batch` rows; text rows `extra` tokens longer than the traced ones, one padded."""
    generator = torch.Generator().manual_seed(batch + extra)
    if tower == "image":
        side = int(config.vision_config.image_size)
        return {"pixel_values": torch.randn(batch, 3, side, side, generator=generator)}
    text = config.text_config
    length = min(int(text.max_position_embeddings), 6 + extra)
    ids = torch.randint(3, int(text.vocab_size), (batch, length), generator=generator)
    eos = text.eos_token_id if text.eos_token_id is not None else int(text.vocab_size) - 1
    if not 0 <= int(eos) < int(text.vocab_size):  # SigLIP's config keeps CLIP's 49407 beside 32,000 tokens
        eos = int(text.vocab_size) - 1
    ids[:, -1] = int(eos)
    mask = torch.ones(batch, length, dtype=torch.int64)
    if batch > 1:  # a shorter caption padded to the batch's length, as the tokenizer pads
        ids[-1, length // 2] = int(eos)
        mask[-1, length // 2 + 1 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _session(path: Path, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: Any, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """The first output for the inputs the graph takes (a SigLIP text tower's graph has no mask input)."""
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v.cpu().numpy() for k, v in inputs.items() if k in names})[0]


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return float((a * b).sum(axis=1).min())


@torch.inference_mode()
def _export(model: Any, tower: str, int8: Path) -> dict[str, Any]:
    """Export, check and quantize one tower into `int8` (written under a temporary name first)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    module = (_ImageTower if tower == "image" else _TextTower)(model.eval().cpu())
    traced = example_inputs(model.config, tower, batch=2)
    names = list(traced)
    axes = {"features": {0: "batch"}}
    axes |= {n: {0: "batch", 1: "sequence"} if tower == "text" else {0: "batch"} for n in names}
    tmp32 = int8.with_name(f".{tower}.fp32.{os.getpid()}.tmp")
    tmp8 = int8.with_name(f".{int8.name}.{os.getpid()}.tmp")
    # Other shapes than the traced ones: a graph that baked a batch or caption length in fails the check.
    check = example_inputs(model.config, tower, batch=3, extra=2)
    expected = module(**check).float().numpy()
    try:
        with patch_convs_as_matmuls(module):
            torch.onnx.export(
                module,
                tuple(traced.values()),
                str(tmp32),
                input_names=names,
                output_names=["features"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        agreement = _min_cosine(_run(_session(tmp32, 1), check), expected)
        if not agreement >= 1 - EXPORT_TOLERANCE:
            raise OnnxExportError(
                f"the exported {tower} tower disagrees with torch (min cosine {agreement:.4f})"
            )
        quantize_dynamic(
            str(tmp32), str(tmp8), **{**QUANTIZATION, "weight_type": QuantType[QUANTIZATION["weight_type"]]}
        )
        int8_cosine = _min_cosine(_run(_session(tmp8, 1), check), expected)
        os.replace(tmp8, int8)
    finally:
        tmp32.unlink(missing_ok=True)
        tmp8.unlink(missing_ok=True)
    return {"fp32_min_cosine": round(agreement, 6), "int8_min_cosine": round(int8_cosine, 6)}


def ensure_tower(model: Any, tower: str, folder: Path) -> dict[str, Any]:
    """The int8 file of one tower in `folder`, built now or reused; raises OnnxExportError when it cannot be.

    Returns the tower's record with `status`: `built` or `reused`.
    """
    int8, record_path = folder / f"{tower}.int8.onnx", folder / f"{tower}.json"
    wanted = versions()
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = None
    if record is not None and record.get("versions") == wanted:
        if record.get("ok") and int8.is_file():
            return {**record, "status": "reused"}
        if not record.get("ok"):
            raise OnnxExportError(f"{record.get('reason')} (recorded in {record_path})")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OnnxExportError(f"cannot create the ONNX cache folder {folder}: {first_line(err)}") from None
    log.info("onnx: exporting the %s tower to %s (once per model)", tower, folder)
    try:
        checks = _export(model, tower, int8)
        record = {"ok": True, "tower": tower, "versions": wanted, **checks}
    except Exception as err:  # the exporter raises many kinds (UnsupportedOperatorError, RuntimeError, ...)
        reason = f"cannot export the {tower} tower to ONNX: {type(err).__name__}: {first_line(err)}"
        record = {"ok": False, "tower": tower, "versions": wanted, "reason": reason}
    tmp = record_path.with_name(f".{record_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, record_path)
    if not record["ok"]:
        raise OnnxExportError(record["reason"])
    return {**record, "status": "built"}


class OnnxClip:
    """CLIPModel's `get_image_features` / `get_text_features` on ONNX Runtime over the int8 files of `folder`.

    Sessions open on first use (so the object pickles into spawned ranks); inputs and outputs are torch
    tensors on the CPU, as the torch model's are. `eval()` and `to()` are there for the callers of a torch
    model (it always runs on the CPU).
    """

    def __init__(self, folder: str | Path, config: Any, threads: int | None = None) -> None:
        self.folder, self.config, self.threads = Path(folder), config, threads
        self._sessions: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sessions": {}}

    def eval(self) -> OnnxClip:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxClip:
        return self

    def _tower(self, tower: str) -> Any:
        if tower not in self._sessions:
            self._sessions[tower] = _session(self.folder / f"{tower}.int8.onnx", self.threads)
        return self._sessions[tower]

    def get_image_features(self, pixel_values: torch.Tensor, **_: Any) -> torch.Tensor:
        out = _run(self._tower("image"), {"pixel_values": pixel_values.float()})
        return torch.from_numpy(out)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any
    ):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids.long(), "attention_mask": attention_mask.long()}
        return torch.from_numpy(_run(self._tower("text"), inputs))
