"""tcpaccept against ground truth: K connections accepted in a private
network namespace (tests/netns_fixture.py)."""
import os
import signal

import pytest

from conftest import Tool
from netns_fixture import (events_of, json_objects, pytracekit_unprivileged,  # noqa: F401
                           veth_pair)

K = 5


@pytest.mark.root
def test_sees_exactly_the_k_accepts(veth_pair):
    port = 9501
    with Tool("tcpaccept", "-P", str(port), "--json") as tool:
        client_ports = veth_pair.tcp_connections(K, port)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    objects = json_objects(out, "tcpaccept")
    events = events_of(objects)
    assert sorted(e["rport"] for e in events) == sorted(client_ports)
    for e in events:
        assert (e["pid"], e["ip"], e["laddr"], e["lport"], e["raddr"]) == \
            (os.getpid(), 4, veth_pair.addr_b, port, veth_pair.addr_a)
        assert e["tid"] != e["pid"]        # the test server accepts in a thread
    assert objects[-1]["captured"] == K and objects[-1]["lost_events"] == 0


@pytest.mark.root
def test_text_columns(veth_pair):
    port = 9502
    with Tool("tcpaccept", "-P", str(port), "-t") as tool:
        client_ports = veth_pair.tcp_connections(2, port)
        out, err = tool.stop(signal.SIGTERM)
    assert tool.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME(s)", "PID", "COMM", "IP", "RADDR", "RPORT", "LADDR",
                                "LPORT"]
    rows = [line.split() for line in lines[1:]]
    assert [int(r[5]) for r in rows] == client_ports
    for r in rows:
        assert r[1] == str(os.getpid())
        assert r[3:5] == ["4", veth_pair.addr_a] and r[6:] == [veth_pair.addr_b, str(port)]


@pytest.mark.root
def test_port_filter_excludes_other_ports(veth_pair):
    with Tool("tcpaccept", "-P", "9599", "--json") as tool:
        veth_pair.tcp_connections(2, 9503)
        out, _ = tool.stop()
    assert events_of(json_objects(out, "tcpaccept")) == []


def test_not_root_is_one_clear_line():
    res = pytracekit_unprivileged("tcpaccept")
    assert res.returncode == 1
    assert res.stderr.strip().startswith("pytracekit tcpaccept: error: pytracekit needs root")


@pytest.mark.root
def test_ipv6_accepts(veth_pair):
    import socket
    port = 9504
    with Tool("tcpaccept", "-6", "--json") as tool:
        client_ports = veth_pair.tcp_connections(2, port, family=socket.AF_INET6)
        out, err = tool.stop()
    events = [e for e in events_of(json_objects(out, "tcpaccept")) if e["lport"] == port]
    assert sorted(e["rport"] for e in events) == sorted(client_ports), err
    assert {(e["ip"], e["laddr"], e["raddr"]) for e in events} == \
        {(6, veth_pair.addr6_b, veth_pair.addr6_a)}
