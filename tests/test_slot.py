import threading
import time

from rgbdcast.net.slot import LatestSlot


def test_newest_wins_and_replacements_are_counted() -> None:
    slot: LatestSlot[int] = LatestSlot()
    slot.put(1)
    slot.put(2)
    assert slot.take(timeout=0) == 2
    assert (slot.put_count, slot.dropped, slot.waited) == (2, 1, 0)  # it was there: no wait
    assert slot.take(timeout=0.01) is None
    assert slot.waited == 0  # nothing came: not a value waited for


def test_values_the_consumer_waited_for_are_counted() -> None:
    slot: LatestSlot[int] = LatestSlot()
    got: list[int | None] = []
    consumer = threading.Thread(target=lambda: got.extend(slot.take(timeout=5) for _ in range(3)))
    consumer.start()
    for value in range(3):
        time.sleep(0.05)  # the consumer is waiting in take() by now
        slot.put(value)
    consumer.join(5)
    assert got == [0, 1, 2]
    assert (slot.put_count, slot.dropped, slot.waited) == (3, 0, 3)


def test_close_wakes_a_waiting_consumer() -> None:
    slot: LatestSlot[int] = LatestSlot()
    got: list[int | None] = []
    consumer = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    consumer.start()
    time.sleep(0.05)
    slot.close()
    consumer.join(5)
    assert got == [None] and slot.closed and slot.waited == 0
