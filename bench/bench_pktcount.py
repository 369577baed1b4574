"""pktcount: what counting costs per packet, tc vs XDP, on a veth pair.

50,000 UDP datagrams are sent from namespace A to B (tests/netns_fixture.py)
as fast as one Python loop can, without counting, with tc classifiers on
both ends (A egress + B ingress) and with XDP on B. The sender's time per
packet includes the veth hop and B's receive path (they run in its context).
Counts are checked against what was sent.
"""
from __future__ import annotations

import sys
import time

from bench.common import ROOT

N = 50_000
PORT = 9990
ROUNDS = 5
MODES = ("none", "tc", "xdp")


def _send(pair, count: int) -> float:
    sender = pair.open_socket(pair.ns_a)
    receiver = pair.open_socket(pair.ns_b)
    receiver.bind((pair.addr_b, PORT))
    payload = b"x" * 64
    target = (pair.addr_b, PORT)
    start = time.perf_counter()
    for _ in range(count):
        sender.sendto(payload, target)
    elapsed = time.perf_counter() - start
    sender.close()
    receiver.close()
    return elapsed


def _counted(pair, mode: str) -> tuple[float, int]:
    from pytracekit.tools.pktcount import start
    counters = []
    if mode == "tc":
        counters.append(start([pair.if_a], netns=pair.ns_a, directions=("egress",),
                              ports=(PORT,)))
        counters.append(start([pair.if_b], netns=pair.ns_b, directions=("ingress",),
                              ports=(PORT,)))
    elif mode == "xdp":
        counters.append(start([pair.if_b], netns=pair.ns_b, xdp=True, ports=(PORT,)))
    try:
        elapsed = _send(pair, N)
        seen = [sum(p for p, _ in c.read().rows.values()) for c in counters]
    finally:
        for c in counters:
            c.close()
    return elapsed, min(seen) if seen else N


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from netns_fixture import create_pair, destroy_pair
    pair = create_pair("bench")
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    counted = {mode: N for mode in MODES}
    try:
        _send(pair, 1000)                           # warm up (ARP, caches)
        for _ in range(ROUNDS):                     # interleaved: drift hits all alike
            for mode in MODES:
                elapsed, seen = _counted(pair, mode)
                times[mode].append(elapsed)
                counted[mode] = min(counted[mode], seen)
    finally:
        destroy_pair(pair)
    base = min(times["none"]) / N * 1e9
    print(f"{N:,} UDP datagrams of 64 bytes A -> B, best of {ROUNDS} interleaved rounds\n")
    print("| counting | ns/packet (sender) | added ns/packet | packets counted |")
    print("|---|---:|---:|---:|")
    for mode in MODES:
        per_packet = min(times[mode]) / N * 1e9
        print(f"| {mode} | {per_packet:.0f} | {per_packet - base:+.0f} | "
              f"{counted[mode]:,} of {N:,} |")
