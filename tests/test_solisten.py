"""solisten against ground truth: listen() calls with known backlogs on
sockets inside a private network namespace (tests/netns_fixture.py): a TCP
socket of each family, the same socket again with a new backlog (reported,
as BCC does), and a UDP socket whose listen() fails (not reported)."""
import errno
import os
import socket

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects, veth_pair  # noqa: F401 (fixture)


def listens(pair, port: int) -> list[tuple]:
    """(proto, addr, port, backlog) for each listen() that succeeded, in order."""
    done = []
    v4 = pair.open_socket(pair.ns_b, socket.SOCK_STREAM)
    v6 = pair.open_socket(pair.ns_b, socket.SOCK_STREAM, socket.AF_INET6)
    udp = pair.open_socket(pair.ns_b, socket.SOCK_DGRAM)
    with v4, v6, udp:
        v4.bind((pair.addr_b, port))
        v4.listen(7)
        done.append(("TCPv4", pair.addr_b, port, 7))
        v6.bind((pair.addr6_b, port + 1))
        v6.listen(3)
        done.append(("TCPv6", pair.addr6_b, port + 1, 3))
        v4.listen(12)                                   # a new backlog
        done.append(("TCPv4", pair.addr_b, port, 12))
        udp.bind((pair.addr_b, port))
        with pytest.raises(OSError) as failed:
            udp.listen(5)
        assert failed.value.errno == errno.EOPNOTSUPP
    return done


def netns_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


@pytest.mark.root
def test_each_listen_with_its_backlog_and_namespace(veth_pair):
    port = 9451
    inode = netns_inode(veth_pair.ns_b)
    with Tool("solisten", "--json", "-n", str(inode)) as tool, \
            Tool("solisten", "--show-netns", "-4") as text_tool:
        truth = listens(veth_pair, port)
        out, err = tool.stop()
        text, _ = text_tool.stop()
    assert tool.returncode == 0, err
    objects = json_objects(out, "solisten")
    events = events_of(objects)
    assert [(e["proto"], e["addr"], e["port"], e["backlog"]) for e in events] == truth
    assert {(e["pid"], e["netns"], e["comm"]) for e in events} == {(os.getpid(), inode, "python")}
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == len(truth)
    lines = text.splitlines()
    assert lines[0].split() == ["PID", "COMM", "NETNS", "PROTO", "BACKLOG", "PORT", "ADDR"]
    ours = [line.split() for line in lines[1:] if line.split()[2] == str(inode)]
    assert ours == [[str(os.getpid()), "python", str(inode), proto, str(backlog), str(p), addr]
                    for proto, addr, p, backlog in truth if proto == "TCPv4"]


@pytest.mark.root
def test_pid_and_netns_filters_exclude(veth_pair):
    port = 9453
    with Tool("solisten", "--json", "-n", str(netns_inode(veth_pair.ns_a))) as other_ns, \
            Tool("solisten", "--json", "-p", "1") as other_pid:
        listens(veth_pair, port)
        out_ns, _ = other_ns.stop()
        out_pid, _ = other_pid.stop()
    assert events_of(json_objects(out_ns, "solisten")) == []
    assert [e for e in events_of(json_objects(out_pid, "solisten"))
            if e["port"] in (port, port + 1)] == []


def test_bad_netns_is_one_line():
    res = pytracekit("solisten", "-n", "zero")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
