"""A picture of a design run: the target trend's exemplars above the designs, each enlarged (for the README).

python scripts/design_sheet.py runs/demo/design/<stamp> docs/demo_designs.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw


def row(paths: list[str], side: int) -> Image.Image:
    strip = Image.new("RGB", (side * len(paths), side), "white")
    for k, path in enumerate(paths):
        strip.paste(Image.open(path).convert("RGB").resize((side, side), Image.NEAREST), (k * side, 0))
    return strip


def main() -> None:
    run, out = Path(sys.argv[1]), Path(sys.argv[2])
    trend = json.loads((run / "trend.json").read_text())
    exemplars = trend["clusters"][trend["target_cluster"]]["exemplars"][:4]
    designs = [d["path"] for d in trend["designs"]]
    side, label = 96, 22
    rows = [
        ("the trend (exemplars of the target cluster)", row(exemplars, side)),
        (f"designs: {trend['prompt']['generator_text']}", row(designs, side)),
    ]
    width = max(r.width for _, r in rows)
    sheet = Image.new("RGB", (width, sum(r.height + label for _, r in rows)), "white")
    y, draw = 0, ImageDraw.Draw(sheet)
    for text, strip in rows:
        draw.text((4, y + 5), text, fill="black")
        sheet.paste(strip, (0, y + label))
        y += label + strip.height
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
