"""tcpconnect against ground truth: K connections across a veth pair between
two private network namespaces (tests/netns_fixture.py)."""
import os
import signal
import subprocess

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects, veth_pair  # noqa: F401 (fixture)

K = 5


@pytest.mark.root
def test_sees_exactly_the_k_connections_with_their_ends(veth_pair):
    port = 9301
    with Tool("tcpconnect", "-P", str(port), "--json") as tool:
        client_ports = veth_pair.tcp_connections(K, port)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    objects = json_objects(out, "tcpconnect")
    events = events_of(objects)
    assert len(events) == K
    assert sorted(e["lport"] for e in events) == sorted(client_ports)
    for e in events:
        assert (e["pid"], e["ip"], e["laddr"], e["raddr"], e["rport"], e["ret"]) == \
            (os.getpid(), 4, veth_pair.addr_a, veth_pair.addr_b, port, 0)
    assert objects[-1]["type"] == "loss" and objects[-1]["lost_events"] == 0
    assert objects[-1]["captured"] == K


@pytest.mark.root
def test_text_columns_with_lport_and_uid(veth_pair):
    port = 9302
    with Tool("tcpconnect", "-P", str(port), "-L", "-U", "-t") as tool:
        client_ports = veth_pair.tcp_connections(2, port)
        out, err = tool.stop(signal.SIGTERM)
    lines = out.splitlines()
    assert lines[0].split() == ["TIME(s)", "UID", "PID", "COMM", "IP", "SADDR", "LPORT",
                                "DADDR", "DPORT"]
    rows = [line.split() for line in lines[1:]]
    assert [int(r[6]) for r in rows] == client_ports
    for r in rows:
        assert r[1:3] == ["0", str(os.getpid())]
        assert r[4:6] == ["4", veth_pair.addr_a] and r[7:] == [veth_pair.addr_b, str(port)]


@pytest.mark.root
def test_count_mode_counts_in_the_kernel(veth_pair):
    port = 9303
    with Tool("tcpconnect", "-c", "-P", str(port), "--json") as tool:
        veth_pair.tcp_connections(K, port)
        out, err = tool.stop()
    counts = events_of(json_objects(out, "tcpconnect"), "count")
    assert counts == [{"type": "count", "ip": 4, "laddr": veth_pair.addr_a,
                       "raddr": veth_pair.addr_b, "rport": port, "count": K}]


@pytest.mark.root
def test_pid_filter_excludes_other_processes(veth_pair):
    port = 9304
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with Tool("tcpconnect", "-p", str(sleeper.pid), "--json") as tool:
            veth_pair.tcp_connections(2, port)
            out, _ = tool.stop()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert events_of(json_objects(out, "tcpconnect")) == []


@pytest.mark.root
def test_bad_pid_and_bad_port_are_one_line_errors():
    res = pytracekit("tcpconnect", "-p", "999999999")
    assert res.returncode == 1
    assert res.stderr.strip() == "pytracekit tcpconnect: error: no process with pid 999999999"
    res = pytracekit("tcpconnect", "-P", "80,http")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "bad port 'http'" in res.stderr


@pytest.mark.root
def test_ipv6_connections_and_the_family_filter(veth_pair):
    import socket
    port = 9305
    with Tool("tcpconnect", "-6", "-P", str(port), "--json") as v6, \
            Tool("tcpconnect", "-4", "-P", str(port), "--json") as v4:
        client_ports = veth_pair.tcp_connections(3, port, family=socket.AF_INET6)
        out6, err = v6.stop()
        out4, _ = v4.stop()
    events = events_of(json_objects(out6, "tcpconnect"))
    assert sorted(e["lport"] for e in events) == sorted(client_ports), err
    assert {(e["ip"], e["laddr"], e["raddr"]) for e in events} == \
        {(6, veth_pair.addr6_a, veth_pair.addr6_b)}
    assert events_of(json_objects(out4, "tcpconnect")) == []


@pytest.mark.root
def test_a_refused_connect_is_reported_with_its_error(veth_pair):
    import errno
    import socket
    port = 9306                      # nothing listens there: B answers with a RST
    with Tool("tcpconnect", "-P", str(port), "--json") as tool:
        client = veth_pair.open_socket(veth_pair.ns_a, socket.SOCK_STREAM)
        with client:
            assert client.connect_ex((veth_pair.addr_b, port)) == errno.ECONNREFUSED
        out, err = tool.stop()
    [event] = events_of(json_objects(out, "tcpconnect"))
    assert (event["pid"], event["rport"], event["ret"]) == (os.getpid(), port, -errno.ECONNREFUSED)


def test_bcc_dns_flag_is_refused_clearly():
    res = pytracekit("tcpconnect", "-d")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "pytracekit tcpconnect: error: -d/--dns (BCC's DNS lookups) is not supported: "
        "tcpconnect reads no packets; for a time limit use --duration SECONDS")
