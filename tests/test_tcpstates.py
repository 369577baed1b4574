"""tcpstates against ground truth: the exact state changes of K sessions
across a veth pair, seen from both ends (tests/netns_fixture.py)."""
import signal
from collections import defaultdict

import pytest

from conftest import Tool
from netns_fixture import events_of, json_objects, veth_pair  # noqa: F401 (fixture)

K = 3
CLIENT = [("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1"),
          ("FIN_WAIT1", "FIN_WAIT2"), ("FIN_WAIT2", "CLOSE")]
SERVER = [("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT"),
          ("CLOSE_WAIT", "LAST_ACK"), ("LAST_ACK", "CLOSE")]


def by_socket(events):
    """Changes per socket life: a freed socket's address is soon reused, so a
    life ends at CLOSE and the next change at that address starts another."""
    lives, current = defaultdict(list), {}
    for e in events:
        key = current.setdefault(e["skaddr"], (e["skaddr"], len(lives)))
        lives[key].append(e)
        if e["newstate"] == "CLOSE":
            del current[e["skaddr"]]
    return lives


@pytest.mark.root
def test_client_side_transitions(veth_pair):
    port = 9601
    with Tool("tcpstates", "-D", str(port), "--json") as tool:
        client_ports = veth_pair.tcp_connections(K, port)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    sockets = by_socket(events_of(json_objects(out, "tcpstates")))
    assert len(sockets) == K
    seen_ports = []
    for changes in sockets.values():
        assert [(c["oldstate"], c["newstate"]) for c in changes] == CLIENT
        assert changes[0]["ms"] == 0        # first sighting: no time in CLOSE known
        # the local port is chosen after SYN_SENT, so it shows from the next change on
        seen_ports.append(changes[-1]["lport"])
        assert {(c["laddr"], c["raddr"], c["rport"]) for c in changes} == \
            {(veth_pair.addr_a, veth_pair.addr_b, port)}
    assert sorted(seen_ports) == sorted(client_ports)


@pytest.mark.root
def test_server_side_transitions_and_the_listener(veth_pair):
    port = 9602
    with Tool("tcpstates", "-L", str(port), "--json") as tool:
        client_ports = veth_pair.tcp_connections(K, port)
        out, err = tool.stop(signal.SIGTERM)
    assert tool.returncode == 0, err
    sockets = by_socket(events_of(json_objects(out, "tcpstates")))
    listener = [s for s in sockets.values() if s[0]["newstate"] == "LISTEN"]
    assert [[(c["oldstate"], c["newstate"]) for c in s] for s in listener] == \
        [[("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")]], (err, out)
    accepted = [s for s in sockets.values() if s[0]["newstate"] != "LISTEN"]
    assert sorted(s[0]["rport"] for s in accepted) == sorted(client_ports)
    for changes in accepted:
        assert [(c["oldstate"], c["newstate"]) for c in changes] == SERVER
        assert all(c["ms"] >= 0 for c in changes)


@pytest.mark.root
def test_bcc_text_columns(veth_pair):
    port = 9603
    with Tool("tcpstates", "-D", str(port)) as tool:
        veth_pair.tcp_connections(1, port)
        out, err = tool.stop()
    lines = out.splitlines()
    assert lines[0].split() == ["SKADDR", "C-PID", "C-COMM", "LADDR", "LPORT", "RADDR",
                                "RPORT", "OLDSTATE", "->", "NEWSTATE", "MS"]
    assert [(r.split()[7], r.split()[9]) for r in lines[1:]] == CLIENT, err


@pytest.mark.root
def test_csv_with_time_columns(veth_pair):
    port = 9604
    with Tool("tcpstates", "-D", str(port), "-s", "-T", "-t") as tool:
        veth_pair.tcp_connections(1, port)
        out, err = tool.stop()
    lines = out.splitlines()
    assert lines[0].split(",") == ["TIME", "TIME(s)", "SKADDR", "C-PID", "C-COMM", "IP", "LADDR",
                                   "LPORT", "RADDR", "RPORT", "OLDSTATE", "NEWSTATE", "MS"], err
    rows = [line.split(",") for line in lines[1:]]
    assert [(r[10], r[11]) for r in rows] == CLIENT
    assert all(len(r) == 13 and r[5] == "4" and r[9] == str(port) for r in rows)
    assert float(rows[0][1]) == 0.0 and float(rows[-1][1]) >= 0
