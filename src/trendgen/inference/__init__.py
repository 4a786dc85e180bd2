"""CLIP towers at inference: batched forwards over files and texts (`clip_forward`), the precision each runs
at (`precision`: fp32, bf16 autocast, ONNX Runtime int8 in `onnx_runtime`) and the text-embedding cache
(`text_cache`)."""
