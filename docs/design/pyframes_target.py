"""Target for pyframes_proto.py: a sleeping thread, a busy recursive main thread
(with argument `spin`, a second busy thread in Worker.spinner; with `deep`, the
main thread recurses 120 levels before spinning).
SIGUSR1 makes faulthandler print every thread's stack (the oracle)."""
import faulthandler
import signal
import sys
import threading
import time

faulthandler.register(signal.SIGUSR1, all_threads=True)


class Worker:
    def sleeper(self):
        while True:
            time.sleep(0.5)

    def spinner(self):
        while True:
            sum(range(1000))


def inner(n):
    total = 0
    for i in range(n):
        total += i
    return total


def outer():
    while True:
        inner(10000)


def recurse(depth):
    if depth:
        return recurse(depth - 1)
    outer()


threading.Thread(target=Worker().sleeper, daemon=True).start()
if "spin" in sys.argv[1:]:
    threading.Thread(target=Worker().spinner, daemon=True).start()
print("ready", flush=True)
recurse(120 if "deep" in sys.argv[1:] else 3)
