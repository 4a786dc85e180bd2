"""The headline end to end at the defaults: photos with one class planted -> trend -> describe -> prompt ->
a generator trendgen trained -> designs that an outside judge (logistic regression on pixels, not trendgen's
CLIP) calls the planted class, with a caption bank of phrases and one of bare words.

Small and real: a tiny CLIP (`trendgen-train`, 120 steps) and a tiny pixel generator on its text tower
(`trendgen-train-generator`, 200 steps) on three Fashion-MNIST classes in the generator's caption form
("a photo of a dress"), then one `trendgen-design -m` sweep over the planted class and the bank.
"""

from __future__ import annotations

import json

import pytest
from helpers.generator import run_tool
from helpers.headline import CLASSES, PHRASE, pixel_judge, write_banks, write_training_folder, write_trend_set
from PIL import Image

QUIET = ["trainer.enable_progress_bar=false", "~callbacks.progress_bar", "logger=none"]
TINY_UNET = [
    "diffusion.unet.block_out_channels=[32,32]",
    "diffusion.unet.down_block_types=[DownBlock2D,CrossAttnDownBlock2D]",
    "diffusion.unet.up_block_types=[CrossAttnUpBlock2D,UpBlock2D]",
    "diffusion.unet.norm_num_groups=8",
    "diffusion.warmup_steps=10",
]
THREADS = {"OMP_NUM_THREADS": "1"}  # beside the other xdist worker: one thread each


def check(result) -> None:
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def designs(tmp_path_factory, fashion_mnist_root) -> dict[tuple[str, str], dict]:
    """{(planted class, bank): trend.json} of one design sweep at the defaults."""
    work = tmp_path_factory.mktemp("headline")
    data = write_training_folder(work / "train", fashion_mnist_root, per_class=200)
    train = ["data=folder", f"data.root={data}", "data.batch_size=32", "data.num_workers=0", *QUIET]
    steps = ["trainer.max_epochs=100", "trainer.check_val_every_n_epoch=1000"]
    check(
        run_tool(
            "trendgen-train",
            [*train, *steps, "trainer.max_steps=120", f"hydra.run.dir={work / 'clip'}"],
            work,
            THREADS,
        )
    )
    generator = [
        *train,
        *steps,
        *TINY_UNET,
        "trainer.max_steps=200",
        f"diffusion.text_encoder={work / 'clip/model'}",
    ]
    check(run_tool("trendgen-train-generator", [*generator, f"hydra.run.dir={work / 'gen'}"], work, THREADS))

    sets = {
        c: write_trend_set(work / f"trend-{c}", fashion_mnist_root, c, n=48, share=0.5, seed=i)
        for i, c in enumerate(CLASSES)
    }
    banks = write_banks(work / "banks")
    sweep = [
        "-m",
        f"model.name_or_path={work / 'clip/model'}",
        "trend.images=" + ",".join(str(p) for p in sets.values()),
        "captions.bank=" + ",".join(str(p) for p in banks.values()),
        "generator=trained",
        f"generator.name_or_path={work / 'gen/generator'}",
        f"hydra.sweep.dir={work / 'design'}",
        "hydra.sweep.subdir=${hydra.job.num}",
        f"paths.cache_dir={work / 'cache'}",
    ]
    check(run_tool("trendgen-design", sweep, work, THREADS))
    runs = {}
    for folder in (work / "design").iterdir():
        if (folder / "trend.json").is_file():
            trend = json.loads((folder / "trend.json").read_text())
            overrides = (folder / ".hydra" / "overrides.yaml").read_text()
            planted = next(c for c in CLASSES if f"trend-{c}" in overrides)
            bank = next(name for name, path in banks.items() if str(path) in overrides)
            runs[planted, bank] = trend
    assert len(runs) == len(CLASSES) * len(banks)
    return runs


@pytest.mark.timeout(600)
def test_the_generator_is_given_a_caption_it_was_trained_on(designs):
    for (planted, bank), trend in designs.items():
        caption = PHRASE.format(planted)
        assert trend["prompt"]["generator_text"] == caption, (planted, bank, trend["prompt"])
        top = trend["captions"][0]["text"]
        assert top == (caption if bank == "phrases" else f"a {planted}"), (planted, bank)
        assert "a a " not in trend["prompt"]["text"]


@pytest.mark.timeout(600)
def test_the_designs_carry_the_planted_class(designs, fashion_mnist_root):
    judge = pixel_judge(fashion_mnist_root, resolution=16)
    for bank in ("phrases", "words"):
        judged = {
            c: judge.classes([Image.open(d["path"]) for d in designs[c, bank]["designs"]]) for c in CLASSES
        }
        share = sum(label == c for c, labels in judged.items() for label in labels) / sum(
            map(len, judged.values())
        )
        assert share >= 0.75, (bank, judged)  # 4 designs per class at the defaults; 11 of 12 measured
