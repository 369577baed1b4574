"""sslsniff against a local TLS connection (Python's ssl module over the
system's libssl.so.3, a throwaway self-signed certificate): a client writes
REQUEST bytes, the server reads them and writes REPLY bytes back; each
call's plaintext size exactly, and with --data its first bytes."""
import re
import shutil
import subprocess
import sys

import pytest

from conftest import pytracekit
from snoop_helpers import summary, validated_json

REQUEST, REPLY = 1000, 3000
SCRIPT = """
import socket, ssl, sys, threading
certdir, request, reply = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(f"{certdir}/cert.pem", f"{certdir}/key.pem")
listener = socket.create_server(("127.0.0.1", 0))
def recv_all(tls, n):
    got = b""
    while len(got) < n:
        got += tls.recv(n - len(got))
def serve():
    conn, _ = listener.accept()
    with server_ctx.wrap_socket(conn, server_side=True) as tls:
        recv_all(tls, request)
        tls.sendall(b"R" * reply)
t = threading.Thread(target=serve)
t.start()
client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_ctx.load_verify_locations(f"{certdir}/cert.pem")
with client_ctx.wrap_socket(socket.create_connection(listener.getsockname()),
                            server_hostname="localhost") as tls:
    tls.sendall(b"Q" * request)
    recv_all(tls, reply)
t.join()
"""


@pytest.fixture(scope="module")
def certdir(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command for a throwaway certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=localhost", "-days", "1", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return str(d)


def _tls(certdir: str) -> list[str]:
    # Debian's python3: its _ssl module uses the system libssl.so.3
    return ["/usr/bin/python3", "-c", SCRIPT, certdir, str(REQUEST), str(REPLY)]


@pytest.mark.root
def test_each_call_its_plaintext_size_and_data(certdir):
    res = pytracekit("sslsniff", "--json", "--data", "--max-buffer-size", "100", "--",
                     *_tls(certdir))
    assert res.returncode == 0, res.stderr
    objects = validated_json("sslsniff", res.stdout)
    events = [(o["func"], o["len"], bytes.fromhex(o["data_hex"]), o["truncated"])
              for o in objects if o["type"] == "event"]
    assert sorted(events) == [("READ/RECV", REQUEST, b"Q" * 100, REQUEST - 100),
                              ("READ/RECV", REPLY, b"R" * 100, REPLY - 100),
                              ("WRITE/SEND", REQUEST, b"Q" * 100, REQUEST - 100),
                              ("WRITE/SEND", REPLY, b"R" * 100, REPLY - 100)]
    # the client's write and read in one thread, the server's in another
    tids = {(o["func"], o["len"]): o["tid"] for o in objects if o["type"] == "event"}
    assert tids["WRITE/SEND", REQUEST] == tids["READ/RECV", REPLY] != tids["READ/RECV", REQUEST]
    assert objects[-1]["type"] == "loss" and objects[-1]["lost_events"] == 0


@pytest.mark.root
def test_sizes_only_by_default_in_bcc_columns(certdir):
    res = pytracekit("sslsniff", "-x", "--", *_tls(certdir))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["FUNC", "TIME(s)", "COMM", "PID", "LEN", "UID", "TID"]
    rows = [line.split() for line in lines[1:]]
    assert sorted((r[0], int(r[4])) for r in rows) == [
        ("READ/RECV", REQUEST), ("READ/RECV", REPLY), ("WRITE/SEND", REQUEST),
        ("WRITE/SEND", REPLY)], lines
    assert all(re.match(r"^\d+\.\d{9}$", r[1]) and r[2] == "python3" for r in rows)
    assert "DATA" not in res.stdout and summary(res.stderr)["captured"] == 4


HTTPS_SERVER = """
import json, socket, ssl, sys
certdir, body, truth = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{certdir}/cert.pem", f"{certdir}/key.pem")
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
for _ in range(2):
    conn, _ = listener.accept()
    with ctx.wrap_socket(conn, server_side=True) as tls:
        got = b""
        while b"\\r\\n\\r\\n" not in got:
            got += tls.recv(4096)
        reply = b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % body + b"B" * body
        tls.sendall(reply)
        with open(truth, "a") as f:
            f.write(json.dumps({"received": len(got), "sent": len(reply)}) + "\\n")
"""


@pytest.mark.root
def test_gnutls_client_calls_and_bcc_switches(certdir, tmp_path):
    """wget is a GnuTLS client: with -o (no OpenSSL) its record sends add up to
    what the (OpenSSL) server received and its record reads to what it sent;
    with -g (no GnuTLS) the same fetch shows nothing."""
    import json
    if not shutil.which("wget") or "libgnutls" not in subprocess.run(
            ["ldd", shutil.which("wget")], capture_output=True, text=True).stdout:
        pytest.skip("needs wget built with GnuTLS")
    truth = tmp_path / "truth.jsonl"
    server = subprocess.Popen(["/usr/bin/python3", "-c", HTTPS_SERVER, certdir, "5000",
                               str(truth)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        fetch = ["wget", "-q", "-O", "/dev/null", "--no-check-certificate",
                 f"https://127.0.0.1:{port}/"]
        gnutls = pytracekit("sslsniff", "-o", "--json", "--", *fetch)
        openssl_only = pytracekit("sslsniff", "-g", "-n", "--json", "--", *fetch)
        server.wait(timeout=60)
    finally:
        server.kill()
    assert gnutls.returncode == 0 and openssl_only.returncode == 0, \
        gnutls.stderr + openssl_only.stderr
    served = [json.loads(line) for line in truth.read_text().splitlines()]
    events = [o for o in validated_json("sslsniff", gnutls.stdout) if o["type"] == "event"]
    assert {o["comm"] for o in events} == {"wget"}
    assert sum(o["len"] for o in events if o["func"] == "WRITE/SEND") == served[0]["received"]
    assert sum(o["len"] for o in events if o["func"] == "READ/RECV") == served[0]["sent"]
    assert [o for o in validated_json("sslsniff", openssl_only.stdout)
            if o["type"] == "event"] == []


def test_leaving_out_both_libraries_is_a_usage_error():
    res = pytracekit("sslsniff", "-o", "-g")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "keep one" in res.stderr
