"""A CPython program with known Python stacks, for the Python-frames tests.
Runs under any CPython 3.8+ (stdlib only). Modes:

  block      a thread blocked in fuenf_函数 -> Waiter.wait_here, the main thread
             blocked in main_outer -> main_inner reading stdin; once both
             block, prints one JSON line: every thread's frames as Python sees
             them (innermost first: name, file, line, id(code), f_lasti).
             SIGUSR1 prints faulthandler's dump to stderr.
  loop S     outer -> inner, a pure-Python loop, for S seconds of CPU time
  threads S  two threads busy in spin_a and spin_b, each for S seconds of its
             own CPU time (however loaded the machine, each gets sampled)
  deep S [N] recurse N (default 100) levels, then busy in bottom for S seconds
  zlib S     compress_it: zlib.compress (C, libz's deflate) in a loop for S seconds
"""
import faulthandler
import json
import signal
import sys
import threading
import time


def name_of(code):
    return getattr(code, "co_qualname", code.co_name)   # co_qualname: 3.11+


def report(skip_ident):
    out = {}
    for ident, frame in sys._current_frames().items():
        if ident == skip_ident:
            continue
        frames = []
        while frame is not None:
            code = frame.f_code
            frames.append([name_of(code), code.co_filename, frame.f_lineno, id(code),
                           frame.f_lasti])
            frame = frame.f_back
        out[str(ident)] = frames
    print(json.dumps(out), flush=True)


class Waiter:
    def __init__(self):
        self.event = threading.Event()

    def wait_here(self):
        self.event.wait()


def fuenf_函数(waiter):
    waiter.wait_here()


def main_inner():
    return sys.stdin.readline()


def main_outer():
    return main_inner()


def block():
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    waiter = Waiter()
    threading.Thread(target=fuenf_函数, args=(waiter,), daemon=True).start()

    def reporter():
        time.sleep(0.3)   # the other two are blocked by then
        report(threading.get_ident())
    threading.Thread(target=reporter, daemon=True).start()
    main_outer()


def inner(n):
    total = 0
    for i in range(n):
        total += i
    return total


def outer(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        inner(20000)


def spin_a(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(range(1000))


def spin_b(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sorted(range(1000))


def two_threads(seconds):
    threads = [threading.Thread(target=f, args=(seconds,)) for f in (spin_a, spin_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def compress_it(seconds):
    import os
    import zlib
    data = os.urandom(1 << 16) * 16
    end = time.process_time() + seconds
    while time.process_time() < end:
        zlib.compress(data, 9)


def bottom(seconds):
    end = time.process_time() + seconds
    total = 0
    while time.process_time() < end:
        for i in range(1000):
            total += i
    return total


def recurse(depth, seconds):
    if depth > 1:
        return recurse(depth - 1, seconds)
    return bottom(seconds)


if __name__ == "__main__":
    mode = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    if mode == "block":
        block()
    elif mode == "loop":
        outer(seconds)
    elif mode == "threads":
        two_threads(seconds)
    elif mode == "zlib":
        compress_it(seconds)
    elif mode == "deep":
        recurse(int(sys.argv[3]) if len(sys.argv) > 3 else 100, seconds)
