"""tcpconnlat against ground truth: K connections across a veth pair between
two private network namespaces (tests/netns_fixture.py), and one connect
whose first SYN is dropped (a full accept queue), so it takes one SYN
retransmit (1 s) at least."""
import os

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects, veth_pair  # noqa: F401 (fixture)

K = 4


@pytest.mark.root
def test_each_connect_once_with_its_latency(veth_pair):
    port = 9401
    with Tool("tcpconnlat", "-P", str(port), "--json") as tool:
        client_ports = veth_pair.tcp_connections(K, port)
        slow_port, slow_took, waiting_port = veth_pair.overflowed_connect(port)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    objects = json_objects(out, "tcpconnlat")
    events = {e["lport"]: e for e in events_of(objects)}
    assert sorted(events) == sorted(client_ports + [slow_port, waiting_port])
    for e in events.values():
        assert (e["pid"], e["comm"], e["ip"], e["laddr"], e["raddr"], e["rport"]) == \
            (os.getpid(), "python", 4, veth_pair.addr_a, veth_pair.addr_b, port)
        assert e["lat_ms"] > 0
    # The dropped SYN: one retransmit timeout (1 s) at least, and no longer
    # than connect() took as the test measured it.
    assert 1000 <= events[slow_port]["lat_ms"] <= slow_took * 1000
    assert objects[-1]["type"] == "loss" and objects[-1]["lost_events"] == 0
    assert objects[-1]["captured"] == K + 2


@pytest.mark.root
def test_min_ms_keeps_only_the_slow_connect_in_bcc_columns(veth_pair):
    port = 9402
    with Tool("tcpconnlat", "-P", str(port), "-L", "-t", "500") as tool:
        veth_pair.tcp_connections(2, port)
        slow_port, slow_took, _ = veth_pair.overflowed_connect(port)
        out, err = tool.stop()
    lines = out.splitlines()
    assert lines[0].split() == ["TIME(s)", "PID", "COMM", "IP", "SADDR", "LPORT", "DADDR",
                                "DPORT", "LAT(ms)"]
    [row] = [line.split() for line in lines[1:]]
    assert row[:8] == ["0.000", str(os.getpid()), "python", "4", veth_pair.addr_a,
                       str(slow_port), veth_pair.addr_b, str(port)]
    assert 1000 <= float(row[8]) <= slow_took * 1000
    assert "1 events captured, 0 lost" in err


@pytest.mark.root
def test_command_is_traced_and_ipv6_filtered(veth_pair, tmp_path):
    import socket
    port = 9403
    # -6 with connects of both families: only the IPv6 ones.
    with Tool("tcpconnlat", "-6", "-P", str(port), "--json") as tool:
        ports4 = veth_pair.tcp_connections(1, port)
        ports6 = veth_pair.tcp_connections(2, port, family=socket.AF_INET6)
        out, _ = tool.stop()
    events = events_of(json_objects(out, "tcpconnlat"))
    assert sorted(e["lport"] for e in events) == sorted(ports6) and ports4
    assert {(e["ip"], e["laddr"], e["raddr"]) for e in events} == \
        {(6, veth_pair.addr6_a, veth_pair.addr6_b)}


def test_bad_min_ms_is_one_line():
    res = pytracekit("tcpconnlat", "fast")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "MIN_MS" in res.stderr
