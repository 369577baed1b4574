"""tcprtt against ground truth: K connections across a veth pair between two
private network namespaces (tests/netns_fixture.py), while `perf stat -a`
counts the same tcp:tcp_probe events (filtered on the test's port): every
segment a socket of ours received is one sample, on the side that received it."""
import socket

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects, veth_pair  # noqa: F401 (fixture)
from perf_oracle import SystemWideCount

K = 4


def perf_probes(port: int, tmp_path, also: str = "") -> SystemWideCount:
    """tcp:tcp_probe system-wide: segments received by the client (dport ==
    port), then by the server (sport == port)."""
    return SystemWideCount([("tcp:tcp_probe", f"dport == {port}{also}"),
                            ("tcp:tcp_probe", f"sport == {port}{also}")], tmp_path)


@pytest.mark.root
def test_one_sample_per_received_segment_as_perf_counts(veth_pair, tmp_path):
    port = 9431
    # -P: sockets whose remote port is the server's (the clients); -p: whose
    # local port is (the server's); -b: one histogram per local address
    with perf_probes(port, tmp_path) as perf:
        with Tool("tcprtt", "-b", "-P", str(port), "--json") as clients, \
                Tool("tcprtt", "-p", str(port), "-m", "-e") as server:
            veth_pair.tcp_connections(K, port)
            out, err = clients.stop()
            text, _ = server.stop()
        to_client, to_server = perf.stop()
    [hist] = events_of(json_objects(out, "tcprtt"), "histogram")
    assert (hist["label"], hist["total"], hist["samples"]) == \
        (veth_pair.addr_a, to_client, to_client), err
    # each side received the other's data: at least K segments each way
    assert to_client >= K and to_server >= K
    # -m: all under 1 ms over a veth pair
    lines = text.splitlines()[1:]
    assert lines[0].split() == ["msecs", ":", "count", "distribution"]
    assert lines[1].split()[:5] == ["0", "->", "1", ":", str(to_server)]
    assert lines[-1] == f"avg = 0 msecs, total: 0 msecs, count: {to_server}"


@pytest.mark.root
def test_address_filters_and_ipv6(veth_pair, tmp_path):
    port = 9432
    with perf_probes(port, tmp_path, f" && family == {socket.AF_INET6}") as perf:
        with Tool("tcprtt", "-B", "-A", veth_pair.addr6_b, "--json") as tool:
            veth_pair.tcp_connections(2, port)                        # IPv4: filtered out
            veth_pair.tcp_connections(2, port, family=socket.AF_INET6)
            out, err = tool.stop()
        to_client, _ = perf.stop()
    [hist] = events_of(json_objects(out, "tcprtt"), "histogram")
    # the IPv6 client's segments only (their remote address is B's)
    assert hist["label"] == veth_pair.addr6_b and hist["total"] == to_client >= 2, err


def test_bad_address_and_mixed_flags_are_one_line():
    res = pytracekit("tcprtt", "-a", "10.0.0.300")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "bad local address '10.0.0.300'" in res.stderr
    res = pytracekit("tcprtt", "-b", "-B")
    assert res.returncode == 2 and "exclude each other" in res.stderr
