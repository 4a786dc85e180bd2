"""Captioned fashion image datasets: synthetic garments, DeepFashion, Fashion-MNIST and any image folder.

Every dataset yields an RGB image, a caption built from the templates in `conf/data/`, an item id and a
category id; `FashionDataModule` (in `trendgen.data.datamodule`) batches them for CLIP training.
"""

from trendgen.data.base import CaptionDataset, build_dataset
from trendgen.data.images import load_rgb

__all__ = ["CaptionDataset", "build_dataset", "load_rgb"]
