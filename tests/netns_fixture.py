"""Two private network namespaces joined by a veth pair, built with pyroute2.

Ground truth for the network tools: the test sends a known number of UDP
datagrams and TCP connections from namespace A (10.200.0.1) to namespace B
(10.200.0.2) over the pair, and nothing else leaves the namespaces: the host's
interfaces, routes and addresses are never touched. Sockets are created inside
a namespace with pyroute2.netns.pushns/popns (setns on this thread), so the
traffic comes from this process: its pid is the one the tcp tools must show.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import pytest

ADDR_A, ADDR_B, PREFIX = "10.200.0.1", "10.200.0.2", 30
# Unique local IPv6 (fd00::/8), added without duplicate address detection so
# they are usable at once.
ADDR6_A, ADDR6_B, PREFIX6 = "fd00:200::1", "fd00:200::2", 64
IFA_F_NODAD = 0x02


@dataclass
class VethPair:
    ns_a: str
    ns_b: str
    if_a: str
    if_b: str
    addr_a: str = ADDR_A
    addr_b: str = ADDR_B
    addr6_a: str = ADDR6_A
    addr6_b: str = ADDR6_B
    created: list[str] = field(default_factory=list)

    @contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        from pyroute2 import netns
        netns.pushns(ns)
        try:
            yield
        finally:
            netns.popns()

    def open_socket(self, ns: str, kind: int = socket.SOCK_DGRAM,
               family: int = socket.AF_INET) -> socket.socket:
        with self.inside(ns):
            return socket.socket(family, kind)

    def server_address(self, family: int) -> str:
        return self.addr6_b if family == socket.AF_INET6 else self.addr_b

    def send_udp(self, count: int, port: int, size: int = 64,
                 family: int = socket.AF_INET) -> int:
        """`count` datagrams of `size` bytes A -> B:port; returns how many B received."""
        receiver = self.open_socket(self.ns_b, family=family)
        sender = self.open_socket(self.ns_a, family=family)
        with receiver, sender:
            receiver.bind((self.server_address(family), port))
            receiver.settimeout(5)
            for i in range(count):
                sender.sendto(bytes([i % 256]) * size, (self.server_address(family), port))
            return sum(1 for _ in range(count) if receiver.recv(65536))

    def tcp_connections(self, count: int, port: int, request: bytes = b"ping" * 25,
                        reply: bytes = b"pong" * 250, family: int = socket.AF_INET) -> list[int]:
        """`count` TCP connections A -> B:port, one after another. Each sends
        `request`, reads `reply`, and the client closes first. Returns the
        client ports, once every socket on both sides is closed."""
        address = self.server_address(family)
        listener = self.open_socket(self.ns_b, socket.SOCK_STREAM, family)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(count)
        served = threading.Event()

        def serve() -> None:
            for _ in range(count):
                conn, _ = listener.accept()
                with conn:
                    got = 0
                    while got < len(request):
                        got += len(conn.recv(65536))
                    conn.sendall(reply)
                    while conn.recv(65536):   # until the client's FIN
                        pass
            served.set()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        ports = []
        try:
            for _ in range(count):
                client = self.open_socket(self.ns_a, socket.SOCK_STREAM, family)
                with client:
                    client.connect((address, port))
                    ports.append(client.getsockname()[1])
                    client.sendall(request)
                    got = 0
                    while got < len(reply):
                        got += len(client.recv(65536))
            server.join(10)
            assert served.is_set(), "the test server did not see every connection"
        finally:
            listener.close()
        # The last ACKs are processed asynchronously: wait for the kernel's CLOSEs.
        assert self.wait_closed(port), f"sockets on port {port} did not close"
        return ports

    def overflowed_connect(self, port: int) -> tuple[int, float, int]:
        """A connect whose first SYN B drops: B's listener (backlog 0) holds one
        connection nobody accepted yet, so the second SYN finds the accept
        queue full. The test accepts the first after 0.3 s and the client's
        SYN retransmit (1 s, TCP_TIMEOUT_INIT) gets through. Returns the slow
        client's port, the seconds its connect() took, and the waiting
        client's port."""
        listener = self.open_socket(self.ns_b, socket.SOCK_STREAM)
        waiting = self.open_socket(self.ns_a, socket.SOCK_STREAM)
        slow = self.open_socket(self.ns_a, socket.SOCK_STREAM)
        with listener, waiting, slow:
            listener.bind((self.addr_b, port))
            listener.listen(0)
            waiting.connect((self.addr_b, port))
            import select
            # Readable once its final ACK is in: the accept queue is full.
            assert select.select([listener], [], [], 5)[0], "no connection to accept"
            accepted: list[socket.socket] = []
            later = threading.Timer(0.3, lambda: accepted.append(listener.accept()[0]))
            later.start()
            began = time.monotonic()
            slow.connect((self.addr_b, port))
            took = time.monotonic() - began
            assert took >= 1.0, f"the first SYN was not dropped: connect() took {took:.3f} s"
            later.join()
            for conn in accepted:
                conn.close()
            ports = slow.getsockname()[1], waiting.getsockname()[1]
        assert self.wait_closed(port), f"sockets on port {port} did not close"
        return ports[0], took, ports[1]

    def open_sockets(self, port: int) -> int:
        """Sockets using `port` on either side, TIME_WAIT (closed) not counted."""
        count = 0
        for ns in (self.ns_a, self.ns_b):
            with self.inside(ns):
                for name in ("tcp", "tcp6"):
                    with open(f"/proc/thread-self/net/{name}") as table:
                        for line in list(table)[1:]:
                            fields = line.split()
                            local, remote, state = fields[1], fields[2], fields[3]
                            ports = {int(local.rsplit(":", 1)[1], 16),
                                     int(remote.rsplit(":", 1)[1], 16)}
                            if port in ports and state != "06":
                                count += 1
        return count

    def wait_closed(self, port: int, timeout: float = 5) -> bool:
        end = time.monotonic() + timeout
        while self.open_sockets(port):
            if time.monotonic() > end:
                return False
            time.sleep(0.005)
        return True


def _configure(ns: str, ifname: str, address: str, address6: str) -> None:
    from pyroute2 import NetNS
    with NetNS(ns) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.addr("add", index=index, address=address, prefixlen=PREFIX)
        ipr.addr("add", index=index, address=address6, prefixlen=PREFIX6, flags=IFA_F_NODAD)
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def create_pair(tag: str) -> VethPair:
    from pyroute2 import IPRoute, netns
    base = f"ptk{os.getpid() % 100000}{tag}"
    pair = VethPair(f"{base}-a", f"{base}-b", f"{base}a", f"{base}b")
    try:
        for ns in (pair.ns_a, pair.ns_b):
            if ns in netns.listnetns():   # left by an earlier run that died: ours by name
                netns.remove(ns)
            netns.create(ns)
            pair.created.append(ns)
        with IPRoute() as ipr:
            # Both ends are born in the host namespace for an instant, then moved.
            ipr.link("add", ifname=pair.if_a, kind="veth",
                     peer={"ifname": pair.if_b, "net_ns_fd": pair.ns_b})
            ipr.link("set", index=ipr.link_lookup(ifname=pair.if_a)[0], net_ns_fd=pair.ns_a)
        _configure(pair.ns_a, pair.if_a, pair.addr_a, pair.addr6_a)
        _configure(pair.ns_b, pair.if_b, pair.addr_b, pair.addr6_b)
    except BaseException:
        destroy_pair(pair)
        raise
    return pair


def destroy_pair(pair: VethPair) -> None:
    """Deleting the namespaces deletes the veth pair with them."""
    from pyroute2 import netns
    while pair.created:
        name = pair.created.pop()
        try:
            netns.remove(name)
        except FileNotFoundError:   # already gone: what we wanted
            pass


def namespace_exists(name: str) -> bool:
    from pyroute2 import netns
    return name in netns.listnetns()


def tc_state(ns: str, ifname: str) -> dict:
    """What is attached to an interface: qdisc kinds, filter count, XDP prog id."""
    from pyroute2 import NetNS
    with NetNS(ns) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        qdiscs = sorted(q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(index=index))
        filters = 0
        if "clsact" in qdiscs:
            for parent in (0xFFFFFFF2, 0xFFFFFFF3):
                filters += len(ipr.get_filters(index=index, parent=parent))
        xdp = ipr.get_links(index)[0].get_attr("IFLA_XDP")
        xdp_id = (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp is not None else 0
    return {"qdiscs": [q for q in qdiscs if q not in ("noqueue",)], "filters": filters,
            "xdp_prog_id": xdp_id}


@pytest.fixture(scope="module")
def veth_pair() -> Iterator[VethPair]:
    pair = create_pair("m")
    try:
        yield pair
    finally:
        names = [pair.ns_a, pair.ns_b]
        destroy_pair(pair)
        assert not any(namespace_exists(n) for n in names)


def json_objects(out: str, tool: str) -> list[dict]:
    """Parse a tool's --json output and validate every line against its schema."""
    import json

    import schema_check
    from conftest import ROOT
    schema = json.loads((ROOT / "pytracekit" / "schemas" / f"{tool}.schema.json").read_text())
    objects = [json.loads(line) for line in out.splitlines() if line.strip()]
    for obj in objects:
        schema_check.validate(obj, schema)
    return objects


def events_of(objects: list[dict], kind: str = "event") -> list[dict]:
    return [o for o in objects if o["type"] == kind]


def pytracekit_unprivileged(*args: str):
    """Run `pytracekit ARGS` as nobody (as itself when not root)."""
    from conftest import pytracekit_as_nobody
    return pytracekit_as_nobody(*args)
