"""Recovery is measured only after the loss was seen (synthetic timelines)."""

from chaoskit.observe import Event, _loss_and_whole


def timeline(*points):
    return [Event(at, "deployment", ready, 3) for at, ready in points]


def test_loss_then_whole():
    loss, whole = _loss_and_whole(timeline((0.0, 3), (10.2, 2), (12.0, 3)), since=10.0)
    assert (round(loss, 3), round(whole, 3)) == (0.2, 2.0)


def test_a_whole_status_before_the_loss_is_not_a_recovery():
    # The controller has not noticed yet: still 3 ready right after the kill, then 2, then 3.
    loss, whole = _loss_and_whole(timeline((10.01, 3), (10.5, 2), (11.5, 3)), since=10.0)
    assert (round(loss, 2), round(whole, 2)) == (0.5, 1.5)


def test_a_loss_never_seen_is_reported_as_such():
    assert _loss_and_whole(timeline((0.0, 3), (10.5, 3)), since=10.0) == (None, None)


def test_not_yet_recovered():
    loss, whole = _loss_and_whole(timeline((10.5, 2), (11.0, 1)), since=10.0)
    assert (loss, whole) == (0.5, None)


def test_events_before_the_fault_are_ignored():
    assert _loss_and_whole(timeline((5.0, 2), (6.0, 3)), since=10.0) == (None, None)
