"""The DeepFashion Category and Attribute Prediction Benchmark, in its coarse or fine annotation layout.

coarse (`data.annotations=coarse`): `Anno/` (or `Anno_coarse/`) holds `list_category_cloth.txt`,
`list_category_img.txt`, `list_attr_cloth.txt`, `list_attr_img.txt`; `Eval/list_eval_partition.txt` assigns
each image to train/val/test. Every file starts with a count line and a header line; columns are separated by
runs of spaces; attribute names may contain spaces (the last token is the attribute type); category labels
are 1-indexed; attribute labels are 1, -1 or 0 and only 1 means present.

fine (`data.annotations=fine`): `Anno_fine/{split}.txt` lists image names, `{split}_cate.txt` and
`{split}_attr.txt` (26 binary attributes) align with it line by line; `Anno_fine/list_category_cloth.txt` and
`list_attr_cloth.txt` name the categories and attributes (count and header lines, as above).

Image names read `img/<Item>/img_XXXXXXXX.jpg`, relative to the root (`root/img/...` or `root/Img/img/...`).
The item id is the `<Item>` folder, numbered in sorted order over all splits. Any file whose row count
disagrees with its count line or with the file it aligns with is refused, naming the file and line.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trendgen.config import DataConfig
from trendgen.data.base import CaptionDataset, file_loader, render_caption, require_templates
from trendgen.errors import TrendgenError

SPLITS = ("train", "val", "test")


@dataclass
class _Split:
    names: list[str] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)  # 0-indexed
    positives: list[tuple[int, ...]] = field(default_factory=list)  # attribute indices labelled 1


@dataclass
class Annotations:
    """Parsed annotations of one layout: names, and per split the rows."""

    categories: list[str]
    attributes: list[str]
    item_ids: dict[str, int]  # <Item> folder -> stable id
    splits: dict[str, _Split]


_CACHE: dict[tuple, Annotations] = {}
_BLOCK_ROWS = 2048  # attribute rows parsed per numpy pass


def build(cfg: DataConfig, split: str) -> CaptionDataset:
    """The DeepFashion split (train / val / test) under `cfg.root`."""
    if split not in SPLITS:
        raise TrendgenError(f"DeepFashion has splits {', '.join(SPLITS)}, not {split!r}")
    if not cfg.root:
        raise TrendgenError("data.root is not set: point it at the unpacked DeepFashion benchmark folder")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise TrendgenError(f"DeepFashion root {root} is not a folder")
    templates = require_templates(cfg)
    image_base = _image_base(root)
    anno = load_annotations(root, cfg.annotations, split)
    rows = anno.splits[split]
    categories = [_readable(name) for name in anno.categories]
    attributes = [_readable(name) for name in anno.attributes]
    template_ids = np.random.default_rng([cfg.seed, SPLITS.index(split)]).integers(
        len(templates), size=len(rows.names)
    )
    captions, named_attributes = [], []
    for category, positives, t in zip(rows.category_ids, rows.positives, template_ids, strict=True):
        named = [attributes[a] for a in positives if not attributes[a].startswith("no ")][
            : cfg.max_attributes
        ]
        named_attributes.append(" ".join(named))
        captions.append(
            render_caption(templates[t], category=categories[category], attributes=named_attributes[-1])
        )
    return CaptionDataset(
        name="deepfashion",
        split=split,
        sources=[image_base / name for name in rows.names],
        captions=captions,
        item_ids=[anno.item_ids[_item(name)] for name in rows.names],
        category_ids=rows.category_ids,
        categories=categories,
        category_template=cfg.category_template,
        load=file_loader(),
        fields={  # multi-field training: the category; the caption's attributes ("" where none is set)
            "category": [categories[c] for c in rows.category_ids],
            "attributes": named_attributes,
        },
    )


def load_annotations(root: Path, layout: str, split: str) -> Annotations:
    """Parse (once per process and file state) the annotations of `layout` (coarse or fine)."""
    if layout == "coarse":
        anno_dir = next((root / d for d in ("Anno", "Anno_coarse") if (root / d).is_dir()), None)
        if anno_dir is None:
            raise TrendgenError(
                f"no coarse DeepFashion annotations: expected {root}/Anno/ or {root}/Anno_coarse/"
            )
        files = [anno_dir / f for f in ("list_category_cloth.txt", "list_attr_cloth.txt")]
        files += [root / "Eval" / "list_eval_partition.txt"]
        files += [anno_dir / f for f in ("list_category_img.txt", "list_attr_img.txt")]
        parse = _parse_coarse
    elif layout == "fine":
        anno_dir = root / "Anno_fine"
        files = [anno_dir / f for f in ("list_category_cloth.txt", "list_attr_cloth.txt")]
        files += [anno_dir / f"{s}.txt" for s in SPLITS]
        files += [anno_dir / f"{split}_cate.txt", anno_dir / f"{split}_attr.txt"]
        parse = _parse_fine
    else:
        raise TrendgenError(f"data.annotations must be coarse or fine, not {layout!r}")
    for path in files:
        if not path.is_file():
            raise TrendgenError(f"missing DeepFashion {layout} annotation file {path}")
    key = (layout, *((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))
    if key not in _CACHE:
        _CACHE.clear()  # one parsed layout at a time: list_attr_img alone holds 289k rows
        _CACHE[key] = parse(*files)
    return _CACHE[key]


def _parse_coarse(
    category_cloth: Path, attr_cloth: Path, partition: Path, category_img: Path, attr_img: Path
):
    categories = _named_list(category_cloth)
    attributes = _named_list(attr_cloth)
    status: dict[str, str] = {}
    for line_no, text in _counted_rows(partition):
        name, value = _two_columns(partition, line_no, text)
        if value not in SPLITS:
            raise TrendgenError(
                f"{partition}:{line_no}: evaluation status {value!r} is not train, val or test"
            )
        status[name] = value
    labels: dict[str, int] = {}
    for line_no, text in _counted_rows(category_img):
        name, value = _two_columns(category_img, line_no, text)
        labels[name] = _category_label(category_img, line_no, value, len(categories))
    positives: dict[str, tuple[int, ...]] = {}
    block: list[tuple[int, str]] = []
    block_names: list[str] = []
    for line_no, text in _counted_rows(attr_img):
        name, *values = text.split(maxsplit=1)
        block.append((line_no, values[0] if values else ""))
        block_names.append(name)
        if len(block) == _BLOCK_ROWS:
            positives.update(
                zip(block_names, _positives_block(attr_img, block, len(attributes)), strict=True)
            )
            block, block_names = [], []
    positives.update(zip(block_names, _positives_block(attr_img, block, len(attributes)), strict=True))
    splits = {s: _Split() for s in SPLITS}
    for name, split in status.items():
        for source, table in ((category_img, labels), (attr_img, positives)):
            if name not in table:
                raise TrendgenError(f"{source}: no row for {name}, which {partition} lists")
        rows = splits[split]
        rows.names.append(name)
        rows.category_ids.append(labels[name])
        rows.positives.append(positives[name])
    return Annotations(categories, attributes, _item_ids(status), splits)


def _parse_fine(category_cloth: Path, attr_cloth: Path, *split_files: Path) -> Annotations:
    categories = _named_list(category_cloth)
    attributes = _named_list(attr_cloth)
    *name_files, cate_file, attr_file = split_files
    names = {
        s: [text.strip() for _, text in _plain_rows(path)] for s, path in zip(SPLITS, name_files, strict=True)
    }
    split = cate_file.name.removesuffix("_cate.txt")
    image_file = name_files[SPLITS.index(split)]
    rows = _Split(names=names[split])
    cate_rows = _aligned_rows(cate_file, image_file, rows.names)
    for line_no, text in cate_rows:
        rows.category_ids.append(_category_label(cate_file, line_no, text.strip(), len(categories)))
    rows.positives = _positives_block(
        attr_file, _aligned_rows(attr_file, image_file, rows.names), len(attributes)
    )
    splits = {s: _Split(names=names[s]) for s in SPLITS}
    splits[split] = rows
    return Annotations(categories, attributes, _item_ids(n for s in SPLITS for n in names[s]), splits)


def _plain_rows(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line_no, line in enumerate(lines, start=1):
            text = line.strip()
            if text:
                yield line_no, text


def _counted_rows(path: Path) -> Iterator[tuple[int, str]]:
    """Data rows after the count line and the header line; the count must match the rows."""
    rows = _plain_rows(path)
    first = next(rows, None)
    if first is None or not first[1].isdigit():
        found = "an empty file" if first is None else repr(first[1][:40])
        raise TrendgenError(f"{path}:{first[0] if first else 1}: expected the row count, found {found}")
    count = int(first[1])
    header = next(rows, None)
    if header is None:
        raise TrendgenError(f"{path}:2: expected a header line after the row count")
    last_line, seen = header[0], 0
    for line_no, text in rows:
        seen += 1
        if seen > count:
            raise TrendgenError(f"{path}:{line_no}: more rows than the {count} announced on line {first[0]}")
        last_line = line_no
        yield line_no, text
    if seen < count:
        raise TrendgenError(
            f"{path}:{last_line}: file ends after {seen} rows, but line {first[0]} announces {count}"
        )


def _aligned_rows(path: Path, partner: Path, names: list[str]) -> list[tuple[int, str]]:
    """Rows of a file that must align line by line with `partner` (which lists `names`)."""
    rows = list(_plain_rows(path))
    if len(rows) > len(names):
        raise TrendgenError(
            f"{path}:{rows[len(names)][0]}: extra row; {partner} lists only {len(names)} images"
        )
    if len(rows) < len(names):
        missing = len(rows) + 1
        raise TrendgenError(
            f"{path}:{missing}: missing row for line {missing} of {partner} ({names[len(rows)]}); "
            f"{path.name} has {len(rows)} rows, {partner.name} has {len(names)}"
        )
    return rows


def _named_list(path: Path) -> list[str]:
    """Names from a `name  type` list whose names may contain spaces (the last token is the type)."""
    names = []
    for line_no, text in _counted_rows(path):
        name, _, kind = text.rpartition(" ")
        if not name.strip() or not kind.lstrip("-").isdigit():
            raise TrendgenError(f"{path}:{line_no}: expected '<name> <type number>', found {text!r}")
        names.append(" ".join(name.split()))
    return names


def _two_columns(path: Path, line_no: int, text: str) -> tuple[str, str]:
    parts = text.split()
    if len(parts) != 2:
        raise TrendgenError(f"{path}:{line_no}: expected 2 columns, found {len(parts)}: {text[:80]!r}")
    return parts[0], parts[1]


def _category_label(path: Path, line_no: int, value: str, n_categories: int) -> int:
    """A 1-indexed category label as a 0-indexed id."""
    if not value.isdigit() or not 1 <= int(value) <= n_categories:
        raise TrendgenError(f"{path}:{line_no}: category label {value!r} is not in 1..{n_categories}")
    return int(value) - 1


def _positives_block(path: Path, rows: list[tuple[int, str]], n_attributes: int) -> list[tuple[int, ...]]:
    """`_positives` of many rows in one numpy pass over their bytes (list_attr_img.txt holds 289M labels).

    Tokens are runs of non-blank bytes; a valid row has `n_attributes` tokens, each `1`, `0` or `-1`. A block
    with any invalid row is re-read row by row, so the error names the first bad line.
    """
    if not rows:
        return []
    data = np.frombuffer(("\n" + "\n".join(values for _, values in rows) + "\n").encode(), dtype=np.uint8)
    blank = data <= ord(" ")  # space, tab, CR, newline; the labels are all above
    starts = np.flatnonzero(~blank[1:] & blank[:-1]) + 1
    ends = np.flatnonzero(blank[1:] & ~blank[:-1]) + 1  # one past each token's last byte
    newlines = np.flatnonzero(data == ord("\n"))
    first_token = np.searchsorted(starts, newlines)  # index of each row's first token (+ one past the end)
    lengths, first = ends - starts, data[starts]
    second = data[np.minimum(starts + 1, len(data) - 1)]
    one_or_zero = (lengths == 1) & ((first == ord("1")) | (first == ord("0")))
    minus_one = (lengths == 2) & (first == ord("-")) & (second == ord("1"))
    valid = (np.diff(first_token) == n_attributes).all() and (one_or_zero | minus_one).all()
    if not valid:
        for line_no, values in rows:
            _positives(path, line_no, values, n_attributes)  # raises for the first bad row
        raise TrendgenError(f"{path}:{rows[0][0]}: malformed attribute labels in the rows from here")
    ones = np.flatnonzero((lengths == 1) & (first == ord("1")))
    ones_row = ones // n_attributes  # every row has exactly n_attributes tokens
    bounds = np.searchsorted(ones_row, np.arange(len(rows) + 1)).tolist()
    flat = (ones % n_attributes).tolist()
    return [tuple(flat[bounds[i] : bounds[i + 1]]) for i in range(len(rows))]


def _positives(path: Path, line_no: int, values: str, n_attributes: int) -> tuple[int, ...]:
    """Indices of the attributes labelled 1 in a row of 1 / -1 / 0 (or 1 / 0) labels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = np.fromstring(values, dtype=np.int64, sep=" ")
    if labels.size != n_attributes:  # fromstring stops at the first malformed token
        raise TrendgenError(
            f"{path}:{line_no}: expected {n_attributes} attribute labels, found {len(values.split())}"
        )
    if labels.size and (labels.min() < -1 or labels.max() > 1):
        raise TrendgenError(f"{path}:{line_no}: attribute labels must be 1, -1 or 0")
    return tuple(np.flatnonzero(labels == 1).tolist())


def _item(name: str) -> str:
    """The `<Item>` folder of `img/<Item>/img_XXXXXXXX.jpg`."""
    parts = name.rsplit("/", 2)
    return parts[-2] if len(parts) >= 2 else parts[-1]


def _item_ids(names) -> dict[str, int]:
    return {item: i for i, item in enumerate(sorted({_item(name) for name in names}))}


def _readable(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def _image_base(root: Path) -> Path:
    """The folder image names (`img/...`) are relative to: root itself or root/Img."""
    for base in (root, root / "Img"):
        if (base / "img").is_dir():
            return base
    raise TrendgenError(
        f"no DeepFashion images: expected {root}/img/ or {root}/Img/img/ (unpack img.zip there)"
    )
