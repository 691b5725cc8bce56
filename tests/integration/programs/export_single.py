"""One process, no torch: 150 steps (probe.step) of about 15 ms, a span every 40 steps, full GC
collections of cyclic garbage, and a second thread, for about three seconds."""

import gc
import threading

import probe


class Node:
    def __init__(self) -> None:
        self.me = self


def work(n: int) -> int:
    return sum(i * i for i in range(n))


def logger(stop: threading.Event) -> None:
    while not stop.wait(0.05):
        work(2000)


def main() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=logger, args=(stop,), name="metrics-logger")
    thread.start()
    garbage = []
    for step in range(1, 151):
        work(150_000)
        garbage.extend(Node() for _ in range(200))
        if step % 30 == 0:
            garbage.clear()
            gc.collect()
        if step % 40 == 0:
            with probe.span("eval"):
                work(60_000)
        probe.step()
    stop.set()
    thread.join()


if __name__ == "__main__":
    main()
