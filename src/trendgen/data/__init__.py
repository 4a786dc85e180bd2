"""Captioned fashion image datasets: synthetic garments, DeepFashion, Fashion-MNIST, any image folder and any
Hugging Face dataset (`trendgen.data.registry` lists them).

Every dataset yields an RGB image, a caption built from the templates in `conf/data/`, an item id and a
category id; `FashionDataModule` (in `trendgen.data.datamodule`) batches them for CLIP training.
"""

from trendgen.data.base import CaptionDataset
from trendgen.data.images import load_rgb
from trendgen.data.registry import DATASETS, build_dataset

__all__ = ["DATASETS", "CaptionDataset", "build_dataset", "load_rgb"]
