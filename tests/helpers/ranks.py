"""Ending a rank that `torch.multiprocessing` spawned for a gloo test."""

from __future__ import annotations

import os
import sys


def end_rank() -> None:
    """End this rank at once, its results written and the other ranks met (call after the last barrier).

    No `destroy_process_group()`: with gloo, the rank hosting the store could wait in it for a peer that had
    already exited (it hung a full suite once). Nor a normal interpreter exit: gloo's threads torn down by the
    exit handlers aborted a rank now and then ("terminate called without an active exception", SIGABRT), and
    the test failed with every result written. `os._exit(0)` skips those handlers; call it only once the
    rank's work succeeded, so that an exception still ends the rank non-zero.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
