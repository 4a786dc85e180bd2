"""scripts/benchlib.py: a benchmark's programs run with the threads asked for, and on the CPU with no CUDA
device visible, so a peer that takes a GPU by itself (open_clip, clip-retrieval, accelerate) cannot."""

from __future__ import annotations

from helpers.scripts import load_script


def test_cpu_runs_hide_cuda_and_gpu_runs_keep_it(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    benchlib = load_script("benchlib")
    cpu = benchlib.thread_env(3)
    assert cpu["CUDA_VISIBLE_DEVICES"] == "" and cpu["OMP_NUM_THREADS"] == "3" and "PYTHONPATH" not in cpu
    assert benchlib.thread_env(3, "cuda")["CUDA_VISIBLE_DEVICES"] == "0"
