"""Native thread pools (OpenMP, BLAS) held at one thread while a session is analysed.

The analysis' arrays are small (at most ``timeline.MAX_BINS`` bins, a few million records), so
more threads only spin against each other, and on a busy machine wait at every barrier for a
core: on the shared 2-core VM at load 5-7, scikit-learn's k-means (the HMM's initialisation)
took 70 ms a run with two OpenMP threads and ~2 ms with one, and the segmentation of a 10-minute
run 1.4 s instead of 0.25 s. One thread also makes the numbers the same on every machine: with
the default, k-means' sums depend on how many cores the process may use. (The diagnosis JSON was
the same either way on 98 sessions: the validation study's 10 s and 10 min cases, null and each
verdict at 1x and 1.5x, and real runs.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Every native thread pool loaded now at one thread, until the block ends (a pool loaded
    inside the block is not limited: enter it again once it is)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency, so normally there
        yield
        return
    with threadpool_limits(limits=1):
        yield
