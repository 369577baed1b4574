"""tcplife against ground truth: K sessions across a veth pair, each sending a
known request and reply (tests/netns_fixture.py)."""
import os
import signal

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects, veth_pair  # noqa: F401 (fixture)

K = 4
REQUEST, REPLY = b"q" * 300, b"r" * 5000


@pytest.mark.root
def test_client_and_server_sides_of_k_sessions(veth_pair):
    port = 9401
    with Tool("tcplife", "--json") as both:
        client_ports = veth_pair.tcp_connections(K, port, REQUEST, REPLY)
        out, err = both.stop()
    assert both.returncode == 0, err
    events = events_of(json_objects(out, "tcplife"))
    client = [e for e in events if e["rport"] == port and e["raddr"] == veth_pair.addr_b]
    server = [e for e in events if e["lport"] == port and e["laddr"] == veth_pair.addr_b]
    assert sorted(e["lport"] for e in client) == sorted(client_ports), (out, err)
    assert sorted(e["rport"] for e in server) == sorted(client_ports), (out, err)
    # The kernel counts in sequence space: each FIN counts one byte, and the
    # connecting side's SYN counts one in its bytes_acked.
    for e in client:
        assert (e["pid"], e["laddr"], e["tx_bytes"], e["rx_bytes"]) == \
            (os.getpid(), veth_pair.addr_a, len(REQUEST) + 2, len(REPLY) + 1), e
        assert 0 < e["ms"] < 5000
    for e in server:
        assert (e["pid"], e["raddr"], e["tx_bytes"], e["rx_bytes"]) == \
            (os.getpid(), veth_pair.addr_a, len(REPLY) + 1, len(REQUEST) + 1), e


@pytest.mark.root
def test_port_filters_and_bcc_columns(veth_pair):
    port = 9402
    with Tool("tcplife", "-D", str(port), "-t") as tool:
        client_ports = veth_pair.tcp_connections(2, port, REQUEST, REPLY)
        out, err = tool.stop(signal.SIGTERM)
    assert tool.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME(s)", "PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT",
                                "TX_KB", "RX_KB", "MS"]
    rows = [line.split() for line in lines[1:]]
    assert [int(r[4]) for r in rows] == client_ports
    for r in rows:
        assert r[1] == str(os.getpid()) and r[3] == veth_pair.addr_a
        assert r[5:9] == [veth_pair.addr_b, str(port), "0", "4"]   # whole KiB, as BCC


@pytest.mark.root
def test_pid_filter_keeps_only_that_process(veth_pair):
    port = 9403
    with Tool("tcplife", "-L", str(port), "-p", str(os.getpid()), "--json") as tool:
        veth_pair.tcp_connections(2, port)
        out, _ = tool.stop()
    events = events_of(json_objects(out, "tcplife"))
    assert len(events) == 2 and {e["pid"] for e in events} == {os.getpid()}


def test_family_flags_exclude_each_other():
    res = pytracekit("tcplife", "-4", "-6", "--ebpf")
    assert res.returncode == 2 and "-4 and -6 exclude each other" in res.stderr


@pytest.mark.root
def test_ipv6_sessions(veth_pair):
    import socket
    port = 9404
    with Tool("tcplife", "-6", "-D", str(port), "--json") as tool:
        client_ports = veth_pair.tcp_connections(2, port, REQUEST, REPLY, family=socket.AF_INET6)
        out, err = tool.stop()
    events = events_of(json_objects(out, "tcplife"))
    assert sorted(e["lport"] for e in events) == sorted(client_ports), err
    for e in events:
        assert (e["ip"], e["laddr"], e["raddr"], e["tx_bytes"], e["rx_bytes"]) == \
            (6, veth_pair.addr6_a, veth_pair.addr6_b, len(REQUEST) + 2, len(REPLY) + 1)
