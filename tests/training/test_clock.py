from __future__ import annotations

from tasktune.training.clock import add_carried, carried_seconds


def test_carried_seconds_go_to_the_innermost_block_and_nowhere_outside_one():
    add_carried(5.0)  # no block: nothing to report to, and no error
    with carried_seconds() as outer:
        add_carried(1.5)
        with carried_seconds() as inner:
            add_carried(2.0)
            add_carried(0.5)
        add_carried(1.0)
    assert (inner.seconds, inner.loops) == (2.5, 2)
    assert (outer.seconds, outer.loops) == (2.5, 2)
    add_carried(3.0)
    assert outer.seconds == 2.5  # closed blocks stay as they were
