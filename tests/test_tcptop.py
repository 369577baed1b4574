"""tcptop against ground truth: K connections across a veth pair between two
private network namespaces (tests/netns_fixture.py), each sending a known
request and reply: every flow's bytes each way, exactly, on both sides."""
import os
import socket
import subprocess

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects, veth_pair  # noqa: F401 (fixture)

K = 3
REQUEST, REPLY = b"q" * 5000, b"r" * 300_000


def totals(objects: list[dict], port: int) -> dict[tuple, list[int]]:
    """(laddr, lport, raddr, rport) -> [rx, tx] summed over intervals, our port only."""
    out: dict[tuple, list[int]] = {}
    for o in events_of(objects, "flow"):
        if port in (o["lport"], o["rport"]):
            assert (o["pid"], o["ip"]) == (os.getpid(), 4)
            key = (o["laddr"], o["lport"], o["raddr"], o["rport"])
            sums = out.setdefault(key, [0, 0])
            sums[0] += o["rx_bytes"]
            sums[1] += o["tx_bytes"]
    return out


@pytest.mark.root
def test_bytes_each_way_per_connection(veth_pair):
    port = 9441
    with Tool("tcptop", "--json", "--interval", "0.5") as tool:
        client_ports = veth_pair.tcp_connections(K, port, request=REQUEST, reply=REPLY)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    objects = json_objects(out, "tcptop")
    a, b = veth_pair.addr_a, veth_pair.addr_b
    want = {}
    for cp in client_ports:
        want[(a, cp, b, port)] = [len(REPLY), len(REQUEST)]       # the client
        want[(b, port, a, cp)] = [len(REQUEST), len(REPLY)]       # the server
    assert totals(objects, port) == want
    numbers = [o["interval_no"] for o in events_of(objects, "flow")]
    assert numbers == sorted(numbers) and objects[-1]["type"] == "loss"
    assert objects[-1]["map_full"] == 0


@pytest.mark.root
def test_text_columns_family_and_pid_filters(veth_pair):
    port = 9442
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with Tool("tcptop", "-C", "-S", "-6", "--interval", "60") as v6, \
                Tool("tcptop", "-p", str(sleeper.pid), "--json") as other:
            veth_pair.tcp_connections(1, port, request=REQUEST, reply=REPLY)
            [client_port] = veth_pair.tcp_connections(1, port, request=REQUEST, reply=REPLY,
                                                      family=socket.AF_INET6)
            out, err = v6.stop()
            out_other, _ = other.stop()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert events_of(json_objects(out_other, "tcptop"), "flow") == []
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert lines[0] == ["PID", "COMM", "LADDR6", "RADDR6", "RX_KB", "TX_KB"], out
    ours = [r for r in lines[1:] if r[2].endswith(f":{port}") or r[3].endswith(f":{port}")]
    a, b = veth_pair.addr6_a, veth_pair.addr6_b
    assert sorted(r[2:] for r in ours) == sorted([
        [f"{a}:{client_port}", f"{b}:{port}", str(len(REPLY) // 1024), str(len(REQUEST) // 1024)],
        [f"{b}:{port}", f"{a}:{client_port}", str(len(REQUEST) // 1024), str(len(REPLY) // 1024)]])
    assert all(r[0] == str(os.getpid()) for r in ours)


@pytest.mark.root
def test_count_ends_the_run():
    res = pytracekit("tcptop", "-C", "0.2", "2", timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("loadavg:") == 2
