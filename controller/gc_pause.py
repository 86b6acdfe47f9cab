"""Holding Python's cyclic garbage collector while a pass builds and frees many objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Hold the cyclic garbage collector for the duration (re-enabled only if it was on).

    A list page is ~8 MB of JSON and hundreds of thousands of new containers, and a pass
    allocates a record per pod and per stored record: each allocation burst triggers
    collections that walk every live object, which about doubles the decode time of a
    10,000-pod list. Decoded JSON and the records hold no reference cycles: reference
    counting frees them, and there is nothing for the collector to find.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
