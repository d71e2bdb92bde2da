"""The C allocator's settings for a process that runs for months.

glibc's malloc gives each thread that contends for the heap an arena of its own, up to eight
per core, and returns little of an arena's freed memory to the system. The daemon runs
threads beside its event loop (the safety supervisor, the executor that stores frames,
serializes listings and reads the database), each allocating and freeing frame-sized buffers,
so its resident memory crept up by megabytes an hour without any object being kept:
`bench/soak.py` measured +356 MB/h over a week of simulated nights with the default, flat
(220-228 MB over six nights) with two arenas, at the same work. Two arenas is what
``MALLOC_ARENA_MAX=2`` in the environment sets; the daemon sets it itself so that an
operator need not know.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["limit_arenas"]

log = logging.getLogger(__name__)

#: mallopt's parameter number for the arena limit (glibc's malloc.h: ``M_ARENA_MAX``).
_M_ARENA_MAX = -8


def limit_arenas(arenas: int = 2) -> bool:
    """Limit glibc's malloc to ``arenas`` arenas, unless the environment already chose.

    Call it early, before the threads start: arenas made before stay.

    Returns
    -------
    bool
        True when the limit was set; False on a C library other than glibc (musl, macOS),
        when ``MALLOC_ARENA_MAX`` is set in the environment (the operator's choice wins), or
        when glibc refused it.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_ARENA_MAX, arenas))  # 1 on success
    if not done:
        log.debug("the C library refused an arena limit of %d", arenas)
    return done
