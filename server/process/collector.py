"""The garbage collector's schedule for a serving process (--gc-threshold).

CPython collects its youngest generation whenever container objects allocated minus freed pass
700. A server handling a batch of requests in one loop turn passes that on every batch: each
collection then walks the objects of every request in flight, although nearly all of them are
freed by reference counting moments later. On the HTTP/2 POST benchmark that was about 6% of the
server's CPU; at 10,000 it is under 0.5%, while cyclic garbage still goes within a few
megabytes. Whatever the app built before serving (its modules, routes, caches) is frozen into
the permanent generation, so that the older generations' collections do not walk it again and
again (and, in forked workers, do not touch its memory pages).
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger("plexicorn.error")


def schedule_collections(youngest_threshold: int) -> None:
    """Collect the youngest generation every `youngest_threshold` net allocations and freeze
    what exists now; 0 leaves the interpreter's collector as it is."""
    if not youngest_threshold:
        return
    gc.collect()  # garbage made while loading is freed, not frozen with the rest
    gc.freeze()
    gc.set_threshold(youngest_threshold, *gc.get_threshold()[1:])
    logger.debug("garbage collector: youngest generation every %d allocations, %d objects frozen",
                 youngest_threshold, gc.get_freeze_count())
