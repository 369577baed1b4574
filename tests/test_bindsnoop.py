"""bindsnoop against ground truth: a script makes five binds with known
options (BINDS below, one failing with EADDRINUSE) and
prints what it bound; perf stat counts the same script's bind() calls."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects

BINDS = textwrap.dedent("""
    import json, os, socket, sys
    SOL_IP, IP_FREEBIND, IP_BIND_ADDRESS_NO_PORT = 0, 15, 24
    PORT = 9421
    out, keep = [], []
    def bind(family, kind, addr, *opts):
        s = socket.socket(family, kind)
        for level, opt, value in opts:
            s.setsockopt(level, opt, value)
        keep.append(s)
        try:
            s.bind(addr)
        except OSError as e:
            return -e.errno, addr[1]
        return 0, s.getsockname()[1]
    out.append(("TCP", 4, "127.0.0.1", ".....", 0) + bind(socket.AF_INET, socket.SOCK_STREAM,
               ("127.0.0.1", 0)))
    out.append(("TCP", 4, "127.0.0.1", "...R.", 0) + bind(socket.AF_INET, socket.SOCK_STREAM,
               ("127.0.0.1", 0), (socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)))
    out.append(("UDP", 6, "::1", "F...r", 0) + bind(socket.AF_INET6, socket.SOCK_DGRAM,
               ("::1", PORT), (socket.SOL_SOCKET, socket.SO_REUSEPORT, 1),
               (SOL_IP, IP_FREEBIND, 1)))
    out.append(("TCP", 4, "127.0.0.1", "..N..", 0) + bind(socket.AF_INET, socket.SOCK_STREAM,
               ("127.0.0.1", 0), (SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)))
    out.append(("UDP", 4, "127.0.0.1", ".....", 1) + bind(socket.AF_INET, socket.SOCK_DGRAM,
               ("127.0.0.1", 0), (socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")))
    taken = out[0][-1]
    out.append(("TCP", 4, "127.0.0.1", ".....", 0) + bind(socket.AF_INET, socket.SOCK_STREAM,
               ("127.0.0.1", taken)))
    with open(sys.argv[1], "w") as truth:      # not stdout: the tool writes there too
        json.dump({"pid": os.getpid(), "binds": out}, truth)
""")


def expected(binds: list) -> list[dict]:
    return [{"protocol": proto, "ip": ip, "addr": addr, "opts": opts, "bound_dev_if": dev,
             "ret": ret, "port": port} for proto, ip, addr, opts, dev, ret, port in binds]


@pytest.mark.root
def test_every_bind_with_its_options_as_perf_counts_them(tmp_path):
    script = tmp_path / "binds.py"
    script.write_text(BINDS)
    counts = tmp_path / "perf.csv"
    with Tool("bindsnoop", "-E", "--json") as tool:
        run = subprocess.run(["perf", "stat", "-x,", "-o", str(counts), "-e",
                              "syscalls:sys_exit_bind", "--", sys.executable, str(script),
                              str(tmp_path / "truth.json")],
                             capture_output=True, text=True, timeout=60)
        out, err = tool.stop()
    assert run.returncode == 0, run.stderr
    truth = json.loads((tmp_path / "truth.json").read_text())
    [perf_line] = [x for x in counts.read_text().splitlines() if "sys_exit_bind" in x]
    ours = [e for e in events_of(json_objects(out, "bindsnoop")) if e["pid"] == truth["pid"]]
    assert int(perf_line.split(",")[0]) == len(truth["binds"]) == len(ours) == 6
    got = [{k: e[k] for k in ("protocol", "ip", "addr", "opts", "bound_dev_if", "ret", "port")}
           for e in ours]
    assert got == expected(truth["binds"])
    assert got[-1]["ret"] == -98 and got[0]["port"] > 0 and got[3]["port"] == 0
    assert {(e["comm"], e["uid"]) for e in ours} == {(os.path.basename(sys.executable)[:15], 0)}


@pytest.mark.root
def test_command_text_columns_and_port_filter(tmp_path):
    script = tmp_path / "binds.py"
    script.write_text(BINDS)
    truth_file = tmp_path / "truth.json"
    res = pytracekit("bindsnoop", "-t", "-U", "--", sys.executable, str(script), str(truth_file))
    assert res.returncode == 0, res.stderr
    truth = json.loads(truth_file.read_text())
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME(s)", "UID", "PID", "COMM", "PROT", "ADDR", "PORT",
                                "OPTS", "IF"]
    rows = [line.split() for line in lines[1:]]
    want = [b for b in expected(truth["binds"]) if b["ret"] == 0]    # no -E: successes only
    assert [r[1:] for r in rows] == [
        ["0", str(truth["pid"]), r[3], b["protocol"], b["addr"], str(b["port"]), b["opts"],
         str(b["bound_dev_if"])] for r, b in zip(rows, want)]
    assert len(rows) == 5 and "5 events captured, 0 lost" in res.stderr
    # -P: only the bind to the fixed port (the UDP one on ::1)
    res = pytracekit("bindsnoop", "-P", "9421", "--json", "--", sys.executable, str(script),
                     str(truth_file))
    objects = json_objects(res.stdout, "bindsnoop")
    assert [(e["protocol"], e["addr"], e["port"]) for e in events_of(objects)] == \
        [("UDP", "::1", 9421)]


def test_bad_uid_is_one_line():
    res = pytracekit("bindsnoop", "-u", "-5")
    assert res.returncode == 2 and res.stderr.count("\n") == 1


@pytest.mark.root
def test_count_per_address_and_port(tmp_path):
    """--count (BCC's): binds per local address and port, as the script made
    them (-E: the failed one under the port it asked for)."""
    from collections import Counter
    from snoop_helpers import validated_json
    script = tmp_path / "binds.py"
    script.write_text(BINDS)
    truth_file = tmp_path / "truth.json"
    res = pytracekit("bindsnoop", "--count", "-E", "--json", "--", sys.executable, str(script),
                     str(truth_file))
    assert res.returncode == 0, res.stderr
    truth = json.loads(truth_file.read_text())["binds"]
    want = Counter((addr, ip, port) for _proto, ip, addr, _opts, _dev, _ret, port in truth)
    objects = validated_json("bindsnoop", res.stdout)
    got = {(o["addr"], o["ip"], o["port"]): o["binds"] for o in objects if o["type"] == "count"}
    assert got == dict(want) and sum(got.values()) == 6
    assert objects[-1]["type"] == "loss" and objects[-1]["map_full"] == 0
