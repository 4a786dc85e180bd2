"""The generator trendgen trains: a pixel-space diffusion model on a trendgen CLIP's text tower, or a LoRA on
Stable Diffusion (`trendgen-train-generator`), exported as a folder `trendgen-design generator=trained` draws
with. Also the tiny random Stable Diffusion of `generator=tiny` (`tiny_random`), for offline runs."""
