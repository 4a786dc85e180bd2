"""Procedurally drawn garments: 10 silhouettes x 10 colours x 5 patterns, deterministic from a seed.

Needs no files, so it is the offline default of the demo and the tests. Each sample's look (garment, colour,
pattern) and caption template are chosen from the seed when the dataset is built; the picture itself is drawn
on demand in `__getitem__` (in DataLoader workers) from a per-sample random stream, so sample i is the same
image on every run. `write_trend_folder` writes such looks to disk, with a planted share of one look, as the
"trending photos" the design demo clusters.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from trendgen.config import DataConfig
from trendgen.data.base import CaptionDataset, render_caption, require_templates
from trendgen.errors import TrendgenError

Point = tuple[float, float]

# Silhouettes in unit coordinates (x right, y down): filled polygons, then detail lines drawn on top.
_SHAPES: dict[str, dict[str, list[list[Point]]]] = {
    "t-shirt": {
        "fill": [[(0.30, 0.22), (0.40, 0.18), (0.45, 0.24), (0.55, 0.24), (0.60, 0.18), (0.70, 0.22),
                  (0.86, 0.36), (0.78, 0.45), (0.68, 0.38), (0.68, 0.85), (0.32, 0.85), (0.32, 0.38),
                  (0.22, 0.45), (0.14, 0.36)]],
        "lines": [],
    },
    "tank top": {
        "fill": [[(0.36, 0.15), (0.42, 0.15), (0.44, 0.30), (0.56, 0.30), (0.58, 0.15), (0.64, 0.15),
                  (0.66, 0.38), (0.68, 0.85), (0.32, 0.85), (0.34, 0.38)]],
        "lines": [],
    },
    "sweater": {
        "fill": [[(0.30, 0.20), (0.42, 0.17), (0.50, 0.21), (0.58, 0.17), (0.70, 0.20), (0.86, 0.78),
                  (0.78, 0.80), (0.68, 0.42), (0.68, 0.82), (0.32, 0.82), (0.32, 0.42), (0.22, 0.80),
                  (0.14, 0.78)]],
        "lines": [[(0.32, 0.77), (0.68, 0.77)], [(0.16, 0.73), (0.24, 0.75)], [(0.76, 0.75), (0.84, 0.73)]],
    },
    "hoodie": {
        "fill": [[(0.30, 0.22), (0.70, 0.22), (0.86, 0.78), (0.78, 0.80), (0.68, 0.44), (0.68, 0.84),
                  (0.32, 0.84), (0.32, 0.44), (0.22, 0.80), (0.14, 0.78)],
                 [(0.36, 0.26), (0.34, 0.12), (0.42, 0.05), (0.58, 0.05), (0.66, 0.12), (0.64, 0.26)]],
        "lines": [[(0.40, 0.24), (0.42, 0.12), (0.58, 0.12), (0.60, 0.24)],
                  [(0.38, 0.82), (0.40, 0.64), (0.60, 0.64), (0.62, 0.82)]],
    },
    "jacket": {
        "fill": [[(0.30, 0.20), (0.44, 0.16), (0.50, 0.26), (0.56, 0.16), (0.70, 0.20), (0.86, 0.72),
                  (0.78, 0.74), (0.68, 0.42), (0.68, 0.72), (0.32, 0.72), (0.32, 0.42), (0.22, 0.74),
                  (0.14, 0.72)]],
        "lines": [[(0.50, 0.26), (0.50, 0.72)], [(0.44, 0.16), (0.40, 0.30), (0.50, 0.26)],
                  [(0.56, 0.16), (0.60, 0.30), (0.50, 0.26)]],
    },
    "coat": {
        "fill": [[(0.30, 0.14), (0.44, 0.10), (0.50, 0.22), (0.56, 0.10), (0.70, 0.14), (0.86, 0.70),
                  (0.78, 0.72), (0.68, 0.38), (0.74, 0.95), (0.26, 0.95), (0.32, 0.38), (0.22, 0.72),
                  (0.14, 0.70)]],
        "lines": [[(0.50, 0.22), (0.50, 0.95)], [(0.31, 0.50), (0.69, 0.50)]],
    },
    "dress": {
        "fill": [[(0.40, 0.08), (0.44, 0.08), (0.46, 0.18), (0.54, 0.18), (0.56, 0.08), (0.60, 0.08),
                  (0.62, 0.28), (0.58, 0.42), (0.80, 0.93), (0.20, 0.93), (0.42, 0.42), (0.38, 0.28)]],
        "lines": [[(0.42, 0.42), (0.58, 0.42)]],
    },
    "skirt": {
        "fill": [[(0.36, 0.28), (0.64, 0.28), (0.64, 0.35), (0.80, 0.82), (0.20, 0.82), (0.36, 0.35)]],
        "lines": [[(0.36, 0.35), (0.64, 0.35)]],
    },
    "trousers": {
        "fill": [[(0.32, 0.08), (0.68, 0.08), (0.73, 0.93), (0.56, 0.93), (0.50, 0.34), (0.44, 0.93),
                  (0.27, 0.93)]],
        "lines": [[(0.32, 0.14), (0.68, 0.14)]],
    },
    "shorts": {
        "fill": [[(0.30, 0.30), (0.70, 0.30), (0.77, 0.64), (0.54, 0.68), (0.50, 0.47), (0.46, 0.68),
                  (0.23, 0.64)]],
        "lines": [[(0.30, 0.36), (0.70, 0.36)]],
    },
}  # fmt: skip

GARMENTS: tuple[str, ...] = tuple(_SHAPES)
COLORS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30),
    "white": (246, 246, 244),
    "grey": (128, 128, 132),
    "red": (200, 32, 36),
    "pink": (240, 132, 172),
    "orange": (240, 132, 24),
    "yellow": (240, 208, 40),
    "green": (40, 140, 64),
    "blue": (40, 84, 200),
    "purple": (120, 52, 160),
}
PATTERNS: tuple[str, ...] = ("solid", "striped", "checked", "polka dot", "floral")
_SPLITS = {"train": 0, "val": 1, "test": 2}
_TREND_STREAM = 3


def draw_garment(
    garment: str, color: str, pattern: str, rng: np.random.Generator, px: int = 64
) -> Image.Image:
    """Draw one garment as a `px` x `px` RGB image; `rng` jitters placement, shade and pattern phase."""
    if garment not in _SHAPES or color not in COLORS or pattern not in PATTERNS:
        raise TrendgenError(f"unknown look {garment!r}/{color!r}/{pattern!r}")
    side = 2 * px  # supersample, then halve: smooth edges at any px
    background = tuple(int(v) for v in rng.integers(212, 242) + rng.integers(-8, 9, size=3))
    canvas = Image.new("RGB", (side, side), background)
    base = np.clip(np.array(COLORS[color]) + rng.integers(-12, 13, size=3), 0, 255)
    shade = _accent(base)
    texture = _pattern(pattern, base, shade, rng, side)

    scale = rng.uniform(0.84, 1.0)
    dx, dy = rng.uniform(-0.04, 0.04, size=2)

    def place(points: list[Point]) -> list[tuple[float, float]]:
        return [
            (((x - 0.5) * scale + 0.5 + dx) * side, ((y - 0.5) * scale + 0.5 + dy) * side) for x, y in points
        ]

    mask = Image.new("L", (side, side), 0)
    mask_draw = ImageDraw.Draw(mask)
    shapes = _SHAPES[garment]
    for polygon in shapes["fill"]:
        mask_draw.polygon(place(polygon), fill=255)
    canvas.paste(texture, mask=mask)
    draw = ImageDraw.Draw(canvas)
    outline = tuple(int(v) for v in np.clip(base * 0.45, 0, 255)) if base.mean() > 60 else (150, 150, 150)
    width = max(1, side // 48)
    for polygon in shapes["fill"]:
        draw.polygon(place(polygon), outline=outline, width=width)
    for line in shapes["lines"]:
        draw.line(place(line), fill=outline, width=width)
    return canvas.reduce(2)


def _accent(base: np.ndarray) -> tuple[int, int, int]:
    """White details on dark garments, near-black on light ones."""
    luminance = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2]
    return (250, 250, 250) if luminance < 150 else (36, 36, 40)


def _pattern(name: str, base: np.ndarray, accent: tuple[int, int, int], rng: np.random.Generator, side: int):
    """A `side` x `side` texture of the pattern in the garment's colour."""
    period = side // 8
    phase_x, phase_y = (int(v) for v in rng.integers(0, period, size=2))
    ys, xs = np.mgrid[0:side, 0:side]
    pixels = np.empty((side, side, 3), dtype=np.uint8)
    pixels[:] = base.astype(np.uint8)
    accent_arr = np.array(accent, dtype=np.uint8)
    if name == "striped":
        pixels[((ys + phase_y) % period) < period * 0.4] = accent_arr
    elif name == "checked":
        cells = ((xs + phase_x) // (period // 2 + 1) + (ys + phase_y) // (period // 2 + 1)) % 2 == 0
        pixels[cells] = (0.5 * base + 0.5 * accent_arr).astype(np.uint8)
    elif name == "polka dot":
        row = (ys + phase_y) // period
        cx = (xs + phase_x + (row % 2) * period // 2) % period - period / 2
        cy = (ys + phase_y) % period - period / 2
        pixels[cx**2 + cy**2 <= (period * 0.22) ** 2] = accent_arr
    texture = Image.fromarray(pixels)
    if name == "floral":
        draw = ImageDraw.Draw(texture)
        petal = max(2, side // 40)
        centre = (240, 200, 40) if accent[0] > 128 else (200, 40, 60)
        for x, y in rng.uniform(0, side, size=(int(side * side / (period * period) * 0.9), 2)):
            for k in range(5):
                angle = 2 * np.pi * k / 5
                px, py = x + 1.6 * petal * np.cos(angle), y + 1.6 * petal * np.sin(angle)
                draw.ellipse((px - petal, py - petal, px + petal, py + petal), fill=accent)
            draw.ellipse((x - petal, y - petal, x + petal, y + petal), fill=centre)
    return texture


def _looks(
    n: int, rng: np.random.Generator, planted: dict[str, str] | None, planted_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) indices into GARMENTS, COLORS, PATTERNS and a boolean mask of the planted rows."""
    looks = np.stack(
        [
            rng.integers(len(GARMENTS), size=n),
            rng.integers(len(COLORS), size=n),
            rng.integers(len(PATTERNS), size=n),
        ],
        axis=1,
    )
    is_planted = np.zeros(n, dtype=bool)
    target = _planted_indices(planted or {})
    if not 0 <= planted_share <= 1:
        raise TrendgenError(f"planted_share must lie in [0, 1], got {planted_share}")
    if planted_share > 0 and not target:
        raise TrendgenError("planted_share > 0 needs a planted look: {garment, color, pattern} (any of them)")
    if planted_share == 0:
        return looks, is_planted
    is_planted[rng.choice(n, size=round(planted_share * n), replace=False)] = True
    for column, value in target.items():
        looks[is_planted, column] = value
    if len(target) == 3:  # keep the share exact: no other row may show the planted look by chance
        same = ~is_planted & np.all(looks == [target[0], target[1], target[2]], axis=1)
        looks[same, 2] = (looks[same, 2] + 1) % len(PATTERNS)
    return looks, is_planted


def _planted_indices(planted: dict[str, str]) -> dict[int, int]:
    """{column: index} for a planted look given as {garment, color, pattern} (any subset)."""
    choices: list[tuple[str, Sequence[str]]] = [
        ("garment", GARMENTS),
        ("color", list(COLORS)),
        ("pattern", PATTERNS),
    ]
    unknown = set(planted) - {key for key, _ in choices}
    if unknown:
        raise TrendgenError(f"planted look has unknown keys {sorted(unknown)}; use garment, color, pattern")
    target: dict[int, int] = {}
    for column, (key, names) in enumerate(choices):
        if key in planted:
            if planted[key] not in names:
                raise TrendgenError(f"planted {key} {planted[key]!r} is not one of: {', '.join(names)}")
            target[column] = list(names).index(planted[key])
    return target


def _draw_source(source: tuple[int, int, int, int, int, int, int]) -> tuple[Image.Image, None]:
    """Draw sample `source` = (garment, colour, pattern, px, seed, stream, index); picklable for workers."""
    garment, color, pattern, px, seed, stream, index = source
    rng = np.random.default_rng([seed, stream, index])
    return draw_garment(GARMENTS[garment], list(COLORS)[color], PATTERNS[pattern], rng, px), None


def _fields(look: Sequence[int]) -> dict[str, str]:
    garment = GARMENTS[look[0]]
    return {
        "garment": garment,
        "category": garment,
        "color": list(COLORS)[look[1]],
        "pattern": PATTERNS[look[2]],
    }


def build(cfg: DataConfig, split: str) -> CaptionDataset:
    """The synthetic split: `size` train, `val_size` val, `test_size` test samples."""
    if split not in _SPLITS:
        raise TrendgenError(f"synthetic data has splits {', '.join(_SPLITS)}, not {split!r}")
    n = {"train": cfg.size, "val": cfg.val_size, "test": cfg.test_size}[split]
    templates = require_templates(cfg)
    stream = _SPLITS[split]
    rng = np.random.default_rng([cfg.seed, stream])
    looks, _ = _looks(n, rng, dict(cfg.planted), cfg.planted_share)
    template_ids = rng.integers(len(templates), size=n)
    return CaptionDataset(
        name="synthetic",
        split=split,
        sources=[(*map(int, look), cfg.image_px, cfg.seed, stream, i) for i, look in enumerate(looks)],
        captions=[
            render_caption(templates[t], **_fields(look)) for look, t in zip(looks, template_ids, strict=True)
        ],
        item_ids=range(n),
        category_ids=looks[:, 0].tolist(),
        categories=list(GARMENTS),
        category_template=cfg.category_template,
        load=_draw_source,
        fields={name: [_fields(look)[name] for look in looks] for name in ("garment", "color", "pattern")},
    )


def write_trend_folder(
    out_dir: str | Path,
    n: int,
    planted: dict[str, str] | None,
    planted_share: float,
    seed: int = 0,
    px: int = 128,
) -> list[Path]:
    """Write `n` looks as PNGs (`look_00000.png`, ...) plus `looks.csv`, a share of them the planted look.

    `looks.csv` (path, caption, category, color, pattern, planted) is also a valid `data=folder` index.
    Rerunning with the same arguments leaves identical files as they are; a different existing file is never
    overwritten (TrendgenError).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    looks, is_planted = _looks(n, np.random.default_rng([seed, _TREND_STREAM]), planted, planted_share)
    paths: list[Path] = []
    rows: list[dict[str, Any]] = []
    for i, look in enumerate(looks):
        image, _ = _draw_source((*map(int, look), px, seed, _TREND_STREAM, i))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        path = out / f"look_{i:05d}.png"
        _write_new(path, buffer.getvalue())
        paths.append(path)
        fields = _fields(look)
        caption = render_caption("a {color} {pattern} {garment}", **fields)
        rows.append(
            {
                "path": path.name,
                "caption": caption,
                "category": fields["garment"],
                "color": fields["color"],
                "pattern": fields["pattern"],
                "planted": int(is_planted[i]),
            }
        )
    text = io.StringIO()
    writer = csv.DictWriter(
        text, fieldnames=list(rows[0]) if rows else ["path", "caption"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    _write_new(out / "looks.csv", text.getvalue().encode())
    return paths


def _write_new(path: Path, content: bytes) -> None:
    """Write a file; an identical existing file is kept, a different one is refused (never overwritten)."""
    if path.exists():
        if path.read_bytes() == content:
            return
        raise TrendgenError(f"{path} already exists with other content; choose an empty output folder")
    path.write_bytes(content)
