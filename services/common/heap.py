"""The cyclic garbage collector's settings for a long-running service."""

import gc

# Allocations (less deallocations) between two collections of the youngest generation. The
# default, 700, collects every two or three events a consumer handles: it allocates hundreds of
# objects an event (models, states, outputs), nearly all freed by reference counting at once.
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_heap() -> None:
    """Call once start-up is done. What exists by then (modules, pydantic schemas, the protocol,
    reference ranges) lives as long as the process: frozen, the collector no longer walks it at
    each full collection. Young collections come less often; cycles are still collected.
    The collector had taken ~15% of the grader's time per event (py-spy, and the stage loop
    timed with it off); settled, the grader through Kafka went from ~4,200 to ~5,200 events/s
    (bench/bench_grader_kafka.py)."""
    # Once a process: what is frozen is never collected, so apps started again in one process
    # (the tests) would each leave theirs behind.
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, oldest)
