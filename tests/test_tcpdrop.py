"""tcpdrop against ground truth: connects to a closed port across a veth pair
between two private network namespaces (tests/netns_fixture.py). Each SYN is
dropped by B with reason NO_SOCKET and answered with a RST, which B's own
TCP counters (Tcp: OutRsts in its /proc/net/snmp) count: the kernel's oracle."""
import errno
import socket

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects, veth_pair  # noqa: F401 (fixture)

K = 3


def refused_connects(pair, count: int, port: int, family: int = socket.AF_INET) -> list[int]:
    """`count` connects A -> B:port where nothing listens; their client ports."""
    ports = []
    for _ in range(count):
        client = pair.open_socket(pair.ns_a, socket.SOCK_STREAM, family)
        with client:
            assert client.connect_ex((pair.server_address(family), port)) == errno.ECONNREFUSED
            ports.append(client.getsockname()[1])
    return ports


def out_rsts(pair) -> int:
    with pair.inside(pair.ns_b):
        with open("/proc/thread-self/net/snmp") as snmp:
            lines = [line.split() for line in snmp if line.startswith("Tcp:")]
    names, values = lines
    return int(values[names.index("OutRsts")])


# the drop, then the receive path up to the softirq, leaf first (by IP version 6?)
RECEIVE_PATHS = {
    False: ["sk_skb_reason_drop", "tcp_v4_rcv", "ip_protocol_deliver_rcu",
            "ip_local_deliver_finish", "__netif_receive_skb_one_core", "process_backlog",
            "__napi_poll", "net_rx_action"],
    True: ["sk_skb_reason_drop", "tcp_v6_rcv", "ip6_protocol_deliver_rcu", "ip6_input_finish",
           "ip6_input", "__netif_receive_skb_one_core", "process_backlog", "__napi_poll",
           "net_rx_action"],
}


@pytest.mark.root
def test_each_refused_syn_is_a_no_socket_drop_with_its_stack(veth_pair):
    port = 9411
    with Tool("tcpdrop", "--json") as tool:
        rsts_before = out_rsts(veth_pair)
        ports4 = refused_connects(veth_pair, K, port)
        ports6 = refused_connects(veth_pair, 2, port, socket.AF_INET6)
        rsts = out_rsts(veth_pair) - rsts_before
        out, err = tool.stop()
    assert tool.returncode == 0, err
    objects = json_objects(out, "tcpdrop")
    ours = [e for e in events_of(objects) if e["dport"] == port]
    assert rsts == K + 2 == len(ours)
    assert sorted(e["sport"] for e in ours) == sorted(ports4 + ports6)
    for e in ours:
        v6 = e["ip"] == 6
        assert (e["saddr"], e["daddr"]) == ((veth_pair.addr6_a, veth_pair.addr6_b) if v6 else
                                            (veth_pair.addr_a, veth_pair.addr_b))
        assert (e["state"], e["flags"], e["reason"], e["reason_code"]) == \
            (None, "SYN", "NO_SOCKET", 3)
        # Dropped where TCP found no socket for it, on the receive path from
        # the softirq (below it: inline in the sender's connect, or ksoftirqd).
        assert e["kernel_stack"][:len(RECEIVE_PATHS[v6])] == RECEIVE_PATHS[v6], e["kernel_stack"]
    assert [e["ip"] for e in ours].count(6) == 2
    assert objects[-1]["type"] == "loss" and objects[-1]["lost_events"] == 0


@pytest.mark.root
def test_family_filter_and_bcc_columns(veth_pair):
    port = 9412
    with Tool("tcpdrop", "-6", "--no-stacks") as tool:
        refused_connects(veth_pair, 1, port)
        [client_port] = refused_connects(veth_pair, 1, port, socket.AF_INET6)
        out, err = tool.stop()
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "PID", "IP", "SADDR:SPORT", ">", "DADDR:DPORT",
                                "STATE", "(FLAGS)", "REASON", "(CODE)"]
    ours = [line.split() for line in lines[1:] if f":{port} " in line]
    assert [r[2:] for r in ours] == [["6", f"{veth_pair.addr6_a}:{client_port}", ">",
                                      f"{veth_pair.addr6_b}:{port}", "-", "(SYN)",
                                      "NO_SOCKET", "(3)"]]
    assert all(r[2] == "6" for r in (line.split() for line in lines[1:]))


def test_pid_is_refused_in_one_line():
    res = pytracekit("tcpdrop", "-p", "1")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
