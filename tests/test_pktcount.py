"""pktcount against ground truth: P UDP datagrams sent across a veth pair
between two private network namespaces (tests/netns_fixture.py), counted by
tc and XDP programs attached through pyroute2, and removed again."""
import signal

import pytest

from conftest import Tool, pytracekit
from netns_fixture import (events_of, json_objects, pytracekit_unprivileged, tc_state,  # noqa: F401
                           veth_pair)
from pytracekit.errors import UsageError
from pytracekit.engine.net import parse_ports
from pytracekit.tools.pktcount import PacketCounts, protocol_name, table

P = 37
SIZE = 64
FRAME = SIZE + 8 + 20 + 14          # UDP + IPv4 + Ethernet headers
CLEAN = {"qdiscs": [], "filters": 0, "xdp_prog_id": 0}


def udp_rows(out: str, port: int) -> list[dict]:
    rows = events_of(json_objects(out, "pktcount"), "packets")
    return [r for r in rows if r["port"] == port and r["protocol"] == "ipv4/udp"]


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_tc_counts_exactly_p_datagrams_each_way_and_detaches(veth_pair, sig):
    port = 9801 + (sig == signal.SIGTERM)
    sender = Tool("pktcount", "-i", veth_pair.if_a, "--netns", veth_pair.ns_a, "--json")
    receiver = Tool("pktcount", "-i", veth_pair.if_b, "--netns", veth_pair.ns_b, "-P",
                    str(port), "--json")
    with sender, receiver:
        assert tc_state(veth_pair.ns_a, veth_pair.if_a)["qdiscs"] == ["clsact"]
        assert veth_pair.send_udp(P, port, SIZE) == P
        out_a, err_a = sender.stop(sig)
        out_b, err_b = receiver.stop(sig)
    assert sender.returncode == 0 and receiver.returncode == 0, err_a + err_b
    assert udp_rows(out_a, port) == [{
        **udp_rows(out_a, port)[0], "interface": veth_pair.if_a, "direction": "egress",
        "packets": P, "bytes": P * FRAME}]
    assert udp_rows(out_b, port) == [{
        **udp_rows(out_b, port)[0], "interface": veth_pair.if_b, "direction": "ingress",
        "packets": P, "bytes": P * FRAME}]
    # -P: nothing but that port on the receiver
    assert {r["port"] for r in events_of(json_objects(out_b, "pktcount"), "packets")} == {port}
    assert tc_state(veth_pair.ns_a, veth_pair.if_a) == CLEAN
    assert tc_state(veth_pair.ns_b, veth_pair.if_b) == CLEAN


@pytest.mark.root
@pytest.mark.parametrize("mode", [[], ["--xdp-generic"]])
def test_xdp_counts_received_datagrams_and_detaches(veth_pair, mode):
    port = 9803 + 10 * bool(mode)
    with Tool("pktcount", "-i", veth_pair.if_b, "--netns", veth_pair.ns_b, "--xdp", *mode,
              "-P", str(port), "--json") as tool:
        assert tc_state(veth_pair.ns_b, veth_pair.if_b)["xdp_prog_id"] > 0
        assert veth_pair.send_udp(P, port, SIZE) == P
        out, err = tool.stop()
    assert tool.returncode == 0, err
    [row] = udp_rows(out, port)
    assert (row["direction"], row["packets"], row["bytes"]) == ("ingress", P, P * FRAME)
    assert tc_state(veth_pair.ns_b, veth_pair.if_b) == CLEAN


@pytest.mark.root
def test_a_clsact_it_did_not_add_stays(veth_pair):
    from pyroute2 import NetNS
    with NetNS(veth_pair.ns_a) as ipr:
        index = ipr.link_lookup(ifname=veth_pair.if_a)[0]
        ipr.tc("add", "clsact", index)
    try:
        port = 9804
        with Tool("pktcount", "-i", veth_pair.if_a, "--netns", veth_pair.ns_a, "-P",
                  str(port), "--json") as tool:
            veth_pair.send_udp(5, port, SIZE)
            out, err = tool.stop()
        assert [r["packets"] for r in udp_rows(out, port)] == [5], err
        assert tc_state(veth_pair.ns_a, veth_pair.if_a) == {**CLEAN, "qdiscs": ["clsact"]}
    finally:
        with NetNS(veth_pair.ns_a) as ipr:
            ipr.tc("del", "clsact", index)


@pytest.mark.root
def test_intervals_add_up_to_the_total(veth_pair):
    port = 9805
    tool = Tool("pktcount", "-i", veth_pair.if_a, "--netns", veth_pair.ns_a, "-P", str(port),
                "--interval", "0.05", "--json").start()
    veth_pair.send_udp(10, port, SIZE)
    veth_pair.send_udp(15, port, SIZE)
    out, err = tool.stop()
    rows = udp_rows(out, port)
    assert sum(r["packets"] for r in rows) == 25, err
    assert sum(r["bytes"] for r in rows) == 25 * FRAME


@pytest.mark.root
def test_duration_ends_the_run_with_a_text_table(veth_pair):
    res = pytracekit("pktcount", "-i", veth_pair.if_a, "--netns", veth_pair.ns_a, "-d", "0.3")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[0].split() == ["IFACE", "DIR", "PROTO", "PORT", "PACKETS",
                                                 "BYTES"]
    assert tc_state(veth_pair.ns_a, veth_pair.if_a) == CLEAN


@pytest.mark.root
def test_errors_are_one_line(veth_pair):
    res = pytracekit("pktcount", "-i", "nope0", "--netns", veth_pair.ns_a)
    assert res.returncode == 1
    assert res.stderr.startswith("pytracekit pktcount: error: no network interface 'nope0' in "
                                 f"network namespace {veth_pair.ns_a} (interfaces: ")
    assert res.stderr.count("\n") == 1
    res = pytracekit("pktcount", "-i", "lo", "--netns", "no-such-ns-ptk")
    assert (res.returncode, res.stderr.strip()) == (1, (
        "pytracekit pktcount: error: no network namespace 'no-such-ns-ptk' "
        "(`ip netns list` shows them)"))
    res = pytracekit("pktcount", "-i", "lo", "--xdp", "--direction", "egress")
    assert res.returncode == 2 and "XDP sees received packets only" in res.stderr
    res = pytracekit("pktcount")
    assert res.returncode == 2 and "name at least one interface" in res.stderr
    assert tc_state(veth_pair.ns_a, veth_pair.if_a) == CLEAN


def test_not_root_is_one_clear_line():
    res = pytracekit_unprivileged("pktcount", "-i", "lo")
    assert res.returncode == 1
    assert res.stderr.strip().startswith("pytracekit pktcount: error: pytracekit needs root")


def test_protocol_names():
    assert protocol_name(0x0800, 17) == "ipv4/udp"
    assert protocol_name(0x86DD, 58) == "ipv6/icmpv6"
    assert protocol_name(0x0806, 0) == "arp"
    assert protocol_name(0x88CC, 0) == "0x88cc"
    assert protocol_name(0x0800, 250) == "ipv4/250"


def test_interval_deltas_and_table_parse_back():
    before = PacketCounts({("a", "egress", "ipv4/udp", 53): [2, 200]})
    after = PacketCounts({("a", "egress", "ipv4/udp", 53): [5, 500],
                          ("a", "ingress", "arp", 0): [1, 42]})
    delta = after.minus(before)
    assert delta.rows == {("a", "egress", "ipv4/udp", 53): [3, 300],
                          ("a", "ingress", "arp", 0): [1, 42]}
    lines = table(delta).splitlines()
    assert [line.split() for line in lines] == [
        ["IFACE", "DIR", "PROTO", "PORT", "PACKETS", "BYTES"],
        ["a", "egress", "ipv4/udp", "53", "3", "300"],
        ["a", "ingress", "arp", "-", "1", "42"]]


def test_port_lists():
    assert parse_ports("80, 443,80") == (80, 443)
    for bad in ("0", "65536", "http", "80,,81"):
        with pytest.raises(UsageError):
            parse_ports(bad)


@pytest.mark.root
def test_ipv6_datagrams(veth_pair):
    import socket
    port = 9806
    with Tool("pktcount", "-i", veth_pair.if_b, "--netns", veth_pair.ns_b, "-P", str(port),
              "--direction", "ingress", "--json") as tool:
        assert veth_pair.send_udp(P, port, SIZE, family=socket.AF_INET6) == P
        out, err = tool.stop()
    rows = events_of(json_objects(out, "pktcount"), "packets")
    assert [(r["protocol"], r["direction"], r["packets"], r["bytes"]) for r in rows] == \
        [("ipv6/udp", "ingress", P, P * (SIZE + 8 + 40 + 14))], err


@pytest.mark.root
def test_a_full_map_is_counted_not_silent(veth_pair):
    from pytracekit.tools.pktcount import start
    counter = start([veth_pair.if_a], netns=veth_pair.ns_a, directions=("egress",),
                    ports=(9811, 9812, 9813), map_entries=1)
    try:
        for port in (9811, 9812, 9813):
            veth_pair.send_udp(2, port, SIZE)
        rows = counter.read().rows
        loss = counter.loss()
    finally:
        assert counter.close() == []
    assert len(rows) == 1 and sum(p for p, _ in rows.values()) == 2
    assert loss.map_full == 4
    assert tc_state(veth_pair.ns_a, veth_pair.if_a) == CLEAN


@pytest.mark.root
def test_a_command_bounds_the_run(veth_pair):
    res = pytracekit("pktcount", "-i", veth_pair.if_a, "--netns", veth_pair.ns_a, "--json",
                     "--", "sleep", "0.2")
    assert res.returncode == 0, res.stderr
    assert json_objects(res.stdout, "pktcount")[-1]["type"] == "loss"


@pytest.mark.root
@pytest.mark.parametrize("mode", [[], ["--xdp"], ["--xdp", "--xdp-generic"]])
def test_the_next_run_removes_what_a_killed_run_left(veth_pair, mode):
    """SIGKILL leaves no chance to detach: the filters or the XDP program stay.
    The next pktcount on that interface removes them (nothing else holds them),
    says so, counts, and leaves the interface clean."""
    port = 9831 + 10 * len(mode)
    where = ["-i", veth_pair.if_b, "--netns", veth_pair.ns_b, *mode]
    killed = Tool("pktcount", *where, "--json").start()
    killed.proc.kill()
    killed.proc.wait(timeout=30)
    left = tc_state(veth_pair.ns_b, veth_pair.if_b)
    assert (left["xdp_prog_id"] > 0) if mode else (left["filters"] > 0)
    with Tool("pktcount", *where, "-P", str(port), "--json") as tool:
        assert veth_pair.send_udp(P, port, SIZE) == P
        out, err = tool.stop()
    assert tool.returncode == 0, err
    what = "XDP program" if mode else "tc ingress filter"
    notes = [line for line in err.splitlines() if line.startswith("pytracekit pktcount: removed")]
    assert notes and all(what.split()[0] in n and veth_pair.if_b in n for n in notes), err
    assert len(notes) == (1 if mode else 2)        # XDP; tc ingress and egress
    [row] = [r for r in udp_rows(out, port) if r["direction"] == "ingress"]
    assert (row["packets"], row["bytes"]) == (P, P * FRAME)
    state = tc_state(veth_pair.ns_b, veth_pair.if_b)
    # The killed run's clsact qdisc stays (who added it is not known); nothing is on it.
    assert (state["filters"], state["xdp_prog_id"]) == (0, 0), state
    assert state["qdiscs"] in ([], ["clsact"])
    if state["qdiscs"]:
        from pyroute2 import NetNS
        with NetNS(veth_pair.ns_b) as ipr:
            ipr.tc("del", "clsact", ipr.link_lookup(ifname=veth_pair.if_b)[0])


@pytest.mark.root
def test_a_filter_of_a_live_run_is_left_alone(veth_pair):
    with Tool("pktcount", "-i", veth_pair.if_b, "--netns", veth_pair.ns_b, "--json") as first:
        res = pytracekit("pktcount", "-i", veth_pair.if_b, "--netns", veth_pair.ns_b, "-d", "0.2")
        assert res.returncode == 1 and "removed" not in res.stderr
        assert "adding a tc ingress filter" in res.stderr
        assert tc_state(veth_pair.ns_b, veth_pair.if_b)["filters"] > 0
        first.stop()
    assert tc_state(veth_pair.ns_b, veth_pair.if_b) == CLEAN
