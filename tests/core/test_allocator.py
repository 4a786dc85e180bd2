"""trendgen.allocator: every app keeps freed heap memory for its large tensors, unless told not to."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A 64 MiB tensor made and freed in a loop: with glibc's defaults each one is a fresh mmap (minor page
# faults every time); with the thresholds raised the heap's pages are reused.
FAULTS = """
import resource, sys, torch
from trendgen.allocator import keep_freed_memory
kept = keep_freed_memory()
for _ in range(5):
    torch.empty(16 << 20).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.empty(16 << 20).fill_(1)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True, env=env)
    kept, count = out.stdout.split()
    return kept, int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_tensors_reuse_the_heap_instead_of_fresh_pages(monkeypatch):
    import os

    env = {k: v for k, v in os.environ.items() if k != "TRENDGEN_MALLOC"}
    kept, with_heap = faults(env)
    default, with_mmap = faults({**env, "TRENDGEN_MALLOC": "default"})
    assert (kept, default) == ("True", "False")
    # 20 x 64 MiB of 4 KiB pages is about 330,000 faults when every tensor is fresh memory
    assert with_mmap > 100_000
    assert with_heap < with_mmap / 4
