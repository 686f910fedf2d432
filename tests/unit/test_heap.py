"""A service's heap after start-up: what exists is frozen, young collections are rarer."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from services.common.heap import YOUNG_COLLECTION_THRESHOLD, settle_heap


@pytest.fixture
def collector_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector_restored")
def test_settling_freezes_what_start_up_made_and_spaces_young_collections() -> None:
    gc.unfreeze()
    middle, oldest = gc.get_threshold()[1:]
    settle_heap()
    assert gc.get_freeze_count() > 1000  # modules, classes, schemas of this process
    assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, middle, oldest)


@pytest.mark.usefixtures("collector_restored")
def test_cycles_made_after_settling_are_still_collected_without_asking() -> None:
    settle_heap()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    gone = weakref.ref(a)
    del a, b
    # Allocations past the young threshold trigger a collection, as a service's work does.
    allocated = [[] for _ in range(3 * YOUNG_COLLECTION_THRESHOLD)]
    assert allocated and gone() is None


@pytest.mark.usefixtures("collector_restored")
def test_settling_again_in_the_same_process_freezes_nothing_more() -> None:
    gc.unfreeze()
    settle_heap()
    frozen = gc.get_freeze_count()
    started_again = [[] for _ in range(1000)]  # what a second app start would leave behind
    settle_heap()
    assert gc.get_freeze_count() == frozen
    assert started_again
