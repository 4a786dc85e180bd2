"""`trend.precision`: how the stages that run a CLIP tower (embed, describe, the design rerank) run it.

- `32`: float32 torch (CPU or CUDA);
- `bf16`: torch under bf16 autocast (CPU or CUDA; a GPU without bf16 runs fp16 autocast, recorded as such);
- `int8`: ONNX Runtime with dynamic int8 quantization, on the CPU (`trendgen.inference.onnx_runtime`); on
  CUDA the towers run bf16 autocast instead, and a model that cannot be exported runs on torch (bf16 where
  the CPU has native bf16, else fp32); both recorded with the reason;
- `auto`: bf16 on a CPU with native bf16 (AVX512-BF16 or AMX) and on GPUs with bf16, `32` elsewhere.

The resolved precision (what `auto` became, or `int8`) is part of the stage keys, so embeddings of different
precisions are never mixed; each stage records what actually ran (precision, runtime, device, fallback
reason) in its artifacts, and `trend.json` says it under `precision`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trendgen.errors import TrendgenError
from trendgen.files import write_json
from trendgen.identity import stable_hash

log = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16", "int8", "auto")
_ALIASES = {"fp32": "32", "float32": "32", "32-true": "32", "bfloat16": "bf16", "bf16-mixed": "bf16"}


def requested_precision(setting: Any) -> str:
    """The `trend.precision` setting, normalised (Hydra reads `32` as an int); unknown values are refused."""
    name = str(setting).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in PRECISIONS:
        raise TrendgenError(f"trend.precision must be one of {list(PRECISIONS)}, not {setting!r}")
    return name


def cpu_bf16_flags() -> list[str]:
    """The native bf16 features of this CPU (AVX512-BF16, AMX), from torch's cpuinfo, else /proc/cpuinfo."""
    import torch

    found = []
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    for flag, probe in probes.items():
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            try:
                if check():
                    found.append(flag)
            except RuntimeError:
                pass
    if not found and Path("/proc/cpuinfo").is_file():
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        found = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return found


def resolve_precision(setting: Any, device: Any) -> tuple[str, str]:
    """(the precision torch or ONNX Runtime will run: 32 | bf16 | fp16 | int8, why) for `device`."""
    import torch

    name = requested_precision(setting)
    cuda = getattr(device, "type", str(device)) == "cuda"
    gpu_bf16 = cuda and torch.cuda.is_bf16_supported()
    if name == "auto":
        if cuda:
            return ("bf16", "the GPU has bf16") if gpu_bf16 else ("32", "the GPU has no bf16")
        flags = cpu_bf16_flags()
        if flags:
            return "bf16", f"the CPU has native bf16 ({', '.join(flags)})"
        return "32", "the CPU has no native bf16"
    if name == "int8" and cuda:
        return ("bf16" if gpu_bf16 else "fp16"), "int8 runs on the CPU (ONNX Runtime); on CUDA autocast ran"
    if name == "bf16" and cuda and not gpu_bf16:
        return "fp16", "the GPU has no bf16: fp16 autocast"
    return name, "as set"


AUTO_BF16_MARGIN = 1.05  # auto takes bf16 on a CPU only when it measured at least this much faster than fp32


def machine_identity() -> list[Any]:
    """What makes one CPU's timings another's: the processor, its flags, the threads torch uses, torch."""
    import platform

    import torch

    model_name, flags = "", ""
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model_name:
                model_name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    return [platform.machine(), model_name, stable_hash(flags), torch.get_num_threads(), torch.__version__]


def measure_cpu_precision(
    model: Any, batch: int = 16, repeats: int = 3, precisions: tuple[str, ...] = ("32", "bf16")
) -> dict[str, Any]:
    """Images/s of the image tower in fp32 and under bf16 autocast on this CPU (interleaved, best of
    `repeats` after a warm-up each) and the faster: bf16 only at `AUTO_BF16_MARGIN` x fp32 or more.
    `precisions=("32",)`: the fp32 rate alone (a CPU without native bf16)."""
    import time

    import torch

    from trendgen.inference.clip_forward import embed_pixels

    size = int(model.config.vision_config.image_size)
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    device = torch.device("cpu")
    seconds: dict[str, list[float]] = {p: [] for p in precisions}
    for precision in seconds:
        embed_pixels(model, pixels, device, precision)  # warm-up
    for _ in range(repeats):
        for precision, times in seconds.items():
            start = time.perf_counter()
            embed_pixels(model, pixels, device, precision)
            times.append(time.perf_counter() - start)
    rates = {p: round(batch / min(t), 2) for p, t in seconds.items()}
    choice = "bf16" if rates.get("bf16", 0) >= AUTO_BF16_MARGIN * rates["32"] else "32"
    return {"rates": rates, "choice": choice, "batch": batch, "machine": machine_identity()}


def cpu_tower_rates(
    clip: Any, identity: Any, cache_dir: str | Path, precisions: tuple[str, ...] = ("32", "bf16")
) -> dict[str, Any]:
    """The image tower's images/s on this CPU at `precisions` (`measure_cpu_precision`), measured once per
    machine and model and kept in `<cache_dir>/precision/`; a record with more precisions serves fewer."""
    path = (
        Path(str(cache_dir)).expanduser() / "precision" / f"{stable_hash(machine_identity(), identity)}.json"
    )
    try:
        record = json.loads(path.read_text())
        if not all(p in record["rates"] for p in precisions):
            raise KeyError("rates")
    except (OSError, ValueError, KeyError, TypeError):
        record = measure_cpu_precision(clip()[0], precisions=precisions)
        write_json(path, record)
    return record


def measured_cpu_precision(clip: Any, identity: Any, cache_dir: str | Path) -> tuple[str, str]:
    """`auto` on a CPU with native bf16: bf16 or fp32, whichever this CPU runs this model's image tower
    faster, measured once per machine and model and kept in `<cache_dir>/precision/`."""
    record = cpu_tower_rates(clip, identity, cache_dir)
    rates, choice = record["rates"], record["choice"]
    why = f"measured on this CPU: bf16 {rates['bf16']} against fp32 {rates['32']} images/s"
    return choice, why


@dataclass
class Tower:
    """One tower as a stage runs it: the model (torch, or `OnnxClip`), the autocast precision for torch,
    what ran (for the stage's artifacts) and how the ONNX files were got (for its manifest)."""

    model: Any
    autocast: str
    record: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


class ClipTowers:
    """The design run's CLIP towers at `trend.precision`: resolved once, ONNX files made per tower on use.

    `clip`: a callable giving (model, tokenizer, image processor), loaded only when a tower is first asked
    for; `identity`: the model's identity (the stage keys'), which keys the ONNX cache.
    """

    def __init__(
        self, clip: Any, setting: Any, identity: Any, cache_dir: str | Path, device: Any = None
    ) -> None:
        from trendgen.inference.clip_forward import pick_device

        self._clip = clip
        self.identity, self.cache_dir = identity, cache_dir
        self.device = device or pick_device()
        self.requested = requested_precision(setting)
        self.precision, self.why = resolve_precision(self.requested, self.device)
        if self.requested == "auto" and self.device.type == "cpu" and self.precision == "bf16":
            self.precision, self.why = measured_cpu_precision(clip, identity, cache_dir)  # never below fp32
        self._towers: dict[str, Tower] = {}
        log.info(
            "precision: trend.precision=%s runs %s on %s (%s)",
            self.requested,
            self.precision,
            self.device.type,
            self.why,
        )

    def image_rate(self) -> float:
        """Images/s of the image tower on this CPU in fp32 (measured once per machine and model), or at the
        run's precision when `auto` measured it: what `decode_workers` weighs decoding against."""
        measured = ("32", "bf16") if self.precision == "bf16" else ("32",)
        rates = cpu_tower_rates(self._clip, self.identity, self.cache_dir, measured)["rates"]
        return float(rates[self.precision if self.precision in rates else "32"])

    def _record(self, precision: str, runtime: str, reason: str | None = None) -> dict[str, Any]:
        return {
            "precision": precision,
            "runtime": runtime,
            "device": self.device.type,
            "fallback_reason": reason,
        }

    def tower(self, kind: str) -> Tower:
        """The `image` or `text` tower at this run's precision (int8: its ONNX file built or reused)."""
        if kind not in self._towers:
            self._towers[kind] = self._make(kind)
        return self._towers[kind]

    def _make(self, kind: str) -> Tower:
        model = self._clip()[0]
        if self.precision != "int8":
            reason = None if self.requested in (self.precision, "auto") else self.why
            return Tower(model, self.precision, self._record(self.precision, "torch", reason))
        from trendgen.inference.onnx_runtime import OnnxClip, OnnxExportError, ensure_tower, onnx_folder

        folder = onnx_folder(self.cache_dir, self.identity)
        try:
            built = ensure_tower(model, kind, folder)
        except OnnxExportError as err:
            fallback = "bf16" if cpu_bf16_flags() else "32"
            log.warning("int8: %s; the %s tower runs on torch %s instead", err, kind, fallback)
            info = {"onnx": {"dir": str(folder), "status": "failed"}}
            return Tower(model, fallback, self._record(fallback, "torch", str(err)), info)
        log.info("int8: %s tower on ONNX Runtime, %s from %s", kind, built["status"], folder)
        info = {"onnx": {"dir": str(folder), "status": built["status"]}}
        onnx_model = OnnxClip(folder, model.config)
        return Tower(onnx_model, "32", self._record("int8", "onnxruntime"), info)


def torch_tower(model: Any, precision: str = "32", device: Any = None) -> Tower:
    """A torch tower at a fixed precision (callers outside a design run: benchmarks, tools)."""
    kind = getattr(device, "type", "cpu")
    record = {"precision": precision, "runtime": "torch", "device": kind, "fallback_reason": None}
    return Tower(model, precision, record)
