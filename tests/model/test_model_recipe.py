"""The fine-tuning recipe's knobs on a tiny CLIP in a real Trainer: LR per group with layer-wise decay, EMA
weights validated and exported, zero-shot prompt ensembles."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from helpers.clip import tiny_fine_tuner, tiny_geometry
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from trendgen.config import ModelConfig, SyntheticDataConfig
from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.model.module import ClipFineTuner
from trendgen.training.fit import fit_and_export

torch.set_num_threads(1)

GEOMETRY = tiny_geometry(vision_layers=2, text_layers=3)
LR = 1e-3


def build(data: dict | None = None, **model) -> tuple[ClipFineTuner, FashionDataModule]:
    data_cfg = OmegaConf.structured(SyntheticDataConfig)
    data_cfg.merge_with(
        {
            "name": "synthetic", "size": 32, "val_size": 16, "test_size": 16, "image_px": 32,
            "batch_size": 8, "num_workers": 0, "templates": ["a {color} {pattern} {garment}"], **(data or {}),
        }
    )  # fmt: skip
    cfg = OmegaConf.structured(ModelConfig)
    optimizer = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": LR, "weight_decay": 0.1}
    cfg.merge_with(
        {"name_or_path": "tiny", "pretrained": False, "geometry": GEOMETRY, "optimizer": optimizer}
    )
    cfg.merge_with(model)
    return tiny_fine_tuner(data_cfg, cfg)


def trainer(**kwargs) -> pl.Trainer:
    kwargs.setdefault("enable_checkpointing", False)
    return pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs
    )


# ---- learning rate per group, layer-wise decay


def test_each_part_and_block_trains_at_its_own_learning_rate():
    """vision x0.5, text x0.25, projections x2, temperature x0.1, decay 0.5 per block below the top; the
    first vision block and the vision embeddings frozen."""
    groups = {"vision": 0.5, "text": 0.25, "projection": 2.0, "logit_scale": 0.1}
    module, datamodule = build(
        lr_groups=groups,
        layer_decay=0.5,
        freeze={"vision_trainable_blocks": 1},
        warmup_fraction=0.0,
        min_lr_ratio=0.1,
    )
    fit = trainer(max_steps=2, limit_val_batches=0)
    fit.fit(module, datamodule=datamodule)
    optimizer = fit.optimizers[0]

    expected = {  # parameter name prefix -> LR, worked out by hand from the rule in the docs
        "vision_model.encoder.layers.1.": LR * 0.5,  # the top vision block: the tower's LR
        "vision_model.post_layernorm.": LR * 0.5,  # the output norm sits on the top block
        "text_model.encoder.layers.2.": LR * 0.25,
        "text_model.encoder.layers.1.": LR * 0.25 * 0.5,
        "text_model.encoder.layers.0.": LR * 0.25 * 0.25,
        "text_model.embeddings.": LR * 0.25 * 0.125,  # below all 3 blocks
        "text_model.final_layer_norm.": LR * 0.25,
        "visual_projection.": LR * 2.0,
        "text_projection.": LR * 2.0,
        "logit_scale": LR * 0.1,
    }
    where = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(where)  # no parameter twice
    seen = set()
    for name, param in module.model.named_parameters():
        if not param.requires_grad:  # the frozen vision block 0 and vision embeddings: in no group
            assert id(param) not in where, name
            assert name.startswith(
                ("vision_model.encoder.layers.0.", "vision_model.embeddings", "vision_model.pre")
            )
            continue
        prefix = next(p for p in expected if name.startswith(p))
        seen.add(prefix)
        group = where[id(param)]
        assert group["initial_lr"] == pytest.approx(expected[prefix], rel=1e-12), name
        decays = param.ndim >= 2 and "embedding" not in name
        assert group["weight_decay"] == (0.1 if decays else 0.0), name
    assert seen == set(expected)
    # the cosine schedule scales every group alike: at its end each group is at 0.1 of its own LR
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.1 * group["initial_lr"], rel=1e-9), group["name"]


def test_bad_learning_rate_settings_are_refused():
    for setting in ({"layer_decay": 0.0}, {"layer_decay": 1.5}, {"lr_groups": {"text": -1.0}}):
        module, datamodule = build(**setting)
        with pytest.raises(TrendgenError, match=r"layer_decay|lr_groups\.text"):
            trainer(max_steps=1, limit_val_batches=0).fit(module, datamodule=datamodule)


# ---- EMA


def _state(checkpoint: Path, key: str) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)[key]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


@pytest.mark.parametrize("weights", ["best", "last"])
def test_ema_weights_are_validated_and_exported(tmp_path, weights):
    """5 steps of 4 per epoch: validated (and checkpointed) after step 4. The exported weights are the EMA's
    (the checkpoint's state_dict), not the raw weights Lightning keeps beside them, and val/loss is theirs."""
    module, datamodule = build(ema=0.5)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss")
    every_step = ModelCheckpoint(dirpath=tmp_path / "steps", every_n_train_steps=1, save_last=True)
    fit = trainer(max_steps=5, callbacks=[checkpoint, every_step], enable_checkpointing=True)
    exported: dict[str, torch.Tensor] = {}

    def export() -> None:
        exported.update({k: v.clone() for k, v in module.model.state_dict().items()})

    metrics = fit_and_export(fit, module, datamodule, None, export, tmp_path, tmp_path / "model", weights)
    saved = Path(checkpoint.best_model_path if weights == "best" else every_step.last_model_path)
    assert torch.load(saved, weights_only=False)["global_step"] == (4 if weights == "best" else 5)
    ema, raw = _state(saved, "state_dict"), _state(saved, "current_model_state")
    assert not torch.equal(ema["visual_projection.weight"], raw["visual_projection.weight"])
    for name, value in ema.items():
        torch.testing.assert_close(exported[name], value, rtol=0, atol=0, msg=name)

    # validating the exported weights afresh (no EMA callback) gives the val/loss recorded for them
    fresh, _ = build()
    fresh.model.load_state_dict(exported)
    rescored = trainer().validate(fresh, datamodule=datamodule, verbose=False)[0]
    assert metrics["val/loss"] == pytest.approx(rescored["val/loss"], rel=1e-5)
    # ...and its zero-shot scores: the class prompts were embedded by the EMA text tower too
    assert metrics["val/zero_shot_accuracy"] == pytest.approx(rescored["val/zero_shot_accuracy"], abs=1e-6)


def test_an_ema_decay_outside_0_1_is_refused():
    module, datamodule = build(ema=1.0)
    with pytest.raises(TrendgenError, match=r"model\.ema="):
        trainer(max_steps=1, limit_val_batches=0).fit(module, datamodule=datamodule)


# ---- zero-shot prompt ensembles


def test_a_one_template_ensemble_is_the_single_template_exactly():
    single, datamodule = build()
    listed, listed_data = build(data={"zero_shot_templates": ["a photo of a {category}"]})
    assert listed_data.zero_shot_prompts == [datamodule.category_prompts]
    assert torch.equal(single.class_embeddings(), listed.class_embeddings())
    scores = [
        trainer().validate(m, datamodule=d, verbose=False)[0]
        for m, d in ((single, datamodule), (listed, listed_data))
    ]
    assert scores[0] == scores[1]


def test_an_ensemble_class_embedding_is_the_normalised_mean_over_templates():
    templates = ["a photo of a {category}", "a {category}", "a {category} on a model"]
    module, datamodule = build(data={"zero_shot_templates": templates})
    assert datamodule.zero_shot_prompts[2][0] == f"a {datamodule.categories[0]} on a model"
    model = module.model.eval()
    with torch.no_grad():
        per_template = []
        for template in templates:
            prompts = [template.format(category=c) for c in datamodule.categories]
            tokens = module.tokenizer(prompts, padding=True, return_tensors="pt")
            features = model.get_text_features(**tokens)
            per_template.append(F.normalize(getattr(features, "pooler_output", features), dim=-1))
        by_hand = F.normalize(torch.stack(per_template).mean(0), dim=-1)
        torch.testing.assert_close(module.class_embeddings(), by_hand, rtol=1e-5, atol=1e-6)

        # validation classifies each image by the nearest ensembled class embedding
        dataset = datamodule.dataset("val")
        pixels = datamodule.collate_for("val")([dataset[i] for i in range(len(dataset))])["pixel_values"]
        images = F.normalize(
            getattr(f := model.get_image_features(pixel_values=pixels), "pooler_output", f), dim=-1
        )
        accuracy = (
            ((images @ by_hand.T).argmax(1) == torch.tensor(dataset.category_ids)).float().mean().item()
        )
    scores = trainer().validate(module, datamodule=datamodule, verbose=False)[0]
    assert scores["val/zero_shot_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert math.isfinite(scores["val/loss"])


def test_a_template_without_the_category_field_is_refused():
    with pytest.raises(TrendgenError, match="zero_shot_templates"):
        build(data={"zero_shot_templates": ["a photo of a {garment}"]})
