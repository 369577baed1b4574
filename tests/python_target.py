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
  naps N MS FILE  three threads each sleep N times MS ms (time.sleep): main in
             naps -> sleeper -> napper -> nap, two others in napper -> nap_a /
             nap_b; then writes FILE: JSON {function: seconds measured around its
             calls}
  getpids N  one os.getpid() in getpids (a tracer's first event of the process,
             then 0.5 s to find its interpreter), then N in <module> -> getpids
             -> caller -> callee, then 0.5 s more (<module>'s code object lives
             while a tracer names it)
  starts N FILE  <module> -> starts sleeps 100 ms as its first statement (the
             process's first block in its own code), then N threads one after
             another each sleep 100 ms once in first_block, their first block;
             FILE: JSON {"starts": seconds, "first_block": seconds summed}.
             Its last block, in starts, ends just before <module>'s code object
             is freed; then 0.2 s more (atexit) with that object freed
  handoff N FILE  N times: main sleeps 20 ms, then wake_it sets an Event that a
             thread waits for in wait_for_it; FILE as for naps ("wait_for_it", and
             "wait_for_it_blocked": that time less the waiter's running and
             runnable time, from /proc/thread-self/schedstat)
"""
import faulthandler
import json
import os
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
    # one write: print's two (text, then newline; PYTHONUNBUFFERED) can straddle a
    # line of the tool that shares this stdout
    os.write(1, (json.dumps(out) + "\n").encode())


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


def nap(ms):
    time.sleep(ms / 1000)


def nap_a(ms):
    time.sleep(ms / 1000)


def nap_b(ms):
    time.sleep(ms / 1000)


def napper(function, n, ms, slept):
    """n calls of function(ms), their time summed in slept[its name]; first a
    block of the new thread's own (a tool may see a thread's first block
    before it knows the thread's Python state)."""
    began = time.monotonic()
    time.sleep(0.2)
    slept[f"warm_up_{function.__name__}"] = time.monotonic() - began
    for _ in range(n):
        began = time.monotonic()
        function(ms)
        name = function.__name__
        slept[name] = slept.get(name, 0.0) + time.monotonic() - began


def sleeper(n, ms, slept):
    napper(nap, n, ms, slept)


def warm_up(slept):
    """Blocks before the measured naps: a tool checks a process for Python at
    its first event, so the first block may have native frames only."""
    began = time.monotonic()
    time.sleep(0.01)
    time.sleep(1.0)   # past the tool's checks at 0, 0.02, 0.12 and 0.62 s
    slept["warm_up"] = time.monotonic() - began


def naps(n, ms, path):
    slept = {}
    warm_up(slept)
    threads = [threading.Thread(target=napper, args=(f, n, ms, slept)) for f in (nap_a, nap_b)]
    for t in threads:
        t.start()
    sleeper(n, ms, slept)
    for t in threads:
        t.join()
    with open(path, "w") as out:
        json.dump(slept, out)


def thread_sched():
    """(on-CPU, run-queue wait) seconds of this thread so far (Linux schedstat)."""
    with open("/proc/thread-self/schedstat") as f:
        on_cpu, queued = f.read().split()[:2]
    return int(on_cpu) / 1e9, int(queued) / 1e9


def wait_for_it(event, slept):
    began, (cpu, queued) = time.monotonic(), thread_sched()
    event.wait()
    took = time.monotonic() - began
    cpu_after, queued_after = thread_sched()
    slept["wait_for_it"] = slept.get("wait_for_it", 0.0) + took
    # what a wakeup ends: the time neither running nor runnable
    blocked = took - (cpu_after - cpu) - (queued_after - queued)
    slept["wait_for_it_blocked"] = slept.get("wait_for_it_blocked", 0.0) + blocked
    event.clear()


def waiter(events, slept):
    for event in events:
        wait_for_it(event, slept)


def wake_it(event):
    event.set()


def handoff(n, path):
    slept = {}
    warm_up(slept)
    events = [threading.Event() for _ in range(n)]
    thread = threading.Thread(target=waiter, args=(events, slept))
    thread.start()
    for event in events:
        time.sleep(0.02)
        wake_it(event)
    thread.join()
    with open(path, "w") as out:
        json.dump(slept, out)


def first_block(slept):
    began = time.monotonic()
    time.sleep(0.1)
    slept["first_block"] = slept.get("first_block", 0.0) + time.monotonic() - began


def starts(n, path):
    """No warm-up: what a tool sees first must already be attributed."""
    began = time.monotonic()
    time.sleep(0.1)
    slept = {"starts": time.monotonic() - began}
    for _ in range(n):
        thread = threading.Thread(target=first_block, args=(slept,))
        thread.start()
        thread.join()
    with open(path, "w") as out:
        # a new stack just before <module> returns and its code object is
        # freed: a tool reads it then, the memory no longer a code object
        began = time.monotonic()
        time.sleep(0.001)
        slept["starts"] += time.monotonic() - began
        json.dump(slept, out)


def callee():
    os.getpid()


def caller(n):
    for _ in range(n):
        callee()


def getpids(n):
    os.getpid()
    time.sleep(0.5)
    caller(n)
    time.sleep(0.5)


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
    elif mode == "naps":
        naps(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif mode == "getpids":
        getpids(int(sys.argv[2]))
    elif mode == "starts":
        import atexit
        atexit.register(time.sleep, 0.2)   # runs after <module>'s code object is freed
        starts(int(sys.argv[2]), sys.argv[3])
    elif mode == "handoff":
        handoff(int(sys.argv[2]), sys.argv[3])
    elif mode == "deep":
        recurse(int(sys.argv[3]) if len(sys.argv) > 3 else 100, seconds)
