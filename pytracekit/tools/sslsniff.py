"""sslsniff: OpenSSL and GnuTLS reads and writes as plaintext sizes (BCC's
columns: FUNC TIME(s) COMM PID LEN), from uprobes on SSL_read/SSL_write and
SSL_read_ex/SSL_write_ex in libssl and gnutls_record_recv/gnutls_record_send in
libgnutls (-o, -g leave one out, as BCC's); --data also shows the plaintext
(BCC shows it by default: here it is asked for), --hexdump as hex. NSS is not
probed (-n is accepted: nothing to leave out)."""
from __future__ import annotations

import binascii
import textwrap

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..errors import NotFoundError, UsageError
from ..probes.specs import find_binary
from ..textsafe import printable

DRY_RUN_ARGS: list[str] = []

MAX_DATA = 16384               # a TLS record's plaintext at most
FUNCTIONS = (("SSL_read", "enter_read"), ("SSL_write", "enter_write"),
             ("SSL_read_ex", "enter_read_ex"), ("SSL_write_ex", "enter_write_ex"))
# gnutls_record_recv/send(session, data, size) return the bytes moved, as SSL_read/write
GNUTLS_FUNCTIONS = (("gnutls_record_recv", "enter_read"), ("gnutls_record_send", "enter_write"))
DIRECTIONS = {0: "READ/RECV", 1: "WRITE/SEND"}


def _attach(events: stream.EventStream, binary: str, functions, pid: int) -> int:
    attached = 0
    for symbol, entry in functions:
        try:
            events.prog.attach_uprobe(binary, entry, symbol=symbol, pid=pid or -1)
            events.prog.attach_uprobe(binary, "leave_call", symbol=symbol, retprobe=True,
                                      pid=pid or -1)
            attached += 1
        except NotFoundError:
            continue      # OpenSSL before 1.1.1 has no _ex functions
    return attached


def gnutls_library(pid: int) -> str | None:
    """libgnutls as the -p process maps it or the linker finds it; None where
    there is none (GnuTLS is probed where present, as BCC's default)."""
    try:
        return find_binary("gnutls", pid or None)
    except NotFoundError:
        return None


def start(*, pid: int = 0, uid: int | None = None, data_size: int = 0, lib: str | None = None,
          openssl: bool = True, gnutls: bool = True,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    if not openssl and not gnutls:
        raise UsageError("-o and -g leave out both libraries sslsniff probes (NSS is not "
                         "probed): keep one")
    binary = find_binary(lib or "ssl", pid or None) if openssl else None
    gnutls_lib = gnutls_library(pid) if gnutls else None
    if not openssl and gnutls_lib is None:
        raise NotFoundError("no libgnutls here (or in the -p process): with -o, sslsniff "
                            "probes GnuTLS only")
    defines = {"FILTER_PID": pid or 0, "FILTER_UID": -1 if uid is None else uid,
               "DATA_SIZE": data_size}
    events = stream.EventStream(stream.load("sslsniff", defines, buffer_pages),
                                stream.layout("sslsniff", defines=defines))
    try:
        if binary is not None and not _attach(events, binary, FUNCTIONS, pid):
            raise NotFoundError(f"no SSL_read or SSL_write in {binary}: not OpenSSL's libssl "
                                "(give it with --lib PATH)")
        if gnutls_lib is not None and not _attach(events, gnutls_lib, GNUTLS_FUNCTIONS, pid):
            raise NotFoundError(f"no gnutls_record_recv or gnutls_record_send in {gnutls_lib}")
    except BaseException:
        events.close()
        raise
    return events


def data_text(raw: bytes, hexdump: bool) -> str:
    if hexdump:
        return textwrap.fill(binascii.hexlify(raw).decode(), width=32)
    # the plaintext as text, control characters but newlines and tabs escaped
    return "\n".join(printable(line).replace("\\x09", "\t")
                     for line in raw.decode(errors="replace").split("\n"))


def formatters(extra: bool, latency: bool, comm: str | None, data: bool, hexdump: bool):
    first = [0]
    comms = stream.CStrings(16)

    def wanted(rows: list[tuple]) -> list[tuple]:
        return [r for r in rows if comm is None or stream.cstr(r[8]) == comm]

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for row in wanted(rows):
            ts, delta, pid, tid, uid, length, captured, direction, name = row[:9]
            first[0] = first[0] or ts
            line = "%-12s %-18.9f %-16s %-7d %-6d" % (DIRECTIONS.get(direction, "?"),
                                                     (ts - first[0]) / 1e9, comms[name],
                                                     pid, length)
            if extra:
                line += " %-7d %-7d" % (uid, tid)
            if latency:
                line += " %-7s" % ("%.3f" % (delta / 1e6))
            out.append(line)
            if data:
                lost = length - captured
                end = ("----- END DATA -----" if lost <= 0 else
                       f"----- END DATA (TRUNCATED, {lost} bytes lost) -----")
                out += ["----- DATA -----", data_text(row[9][:captured], hexdump), end, ""]
        return out

    def objects(rows: list[tuple]) -> list[dict]:
        out = []
        for row in wanted(rows):
            ts, delta, pid, tid, uid, length, captured, direction, name = row[:9]
            first[0] = first[0] or ts
            obj = {"time_s": round((ts - first[0]) / 1e9, 9), "func": DIRECTIONS.get(direction),
                   "comm": stream.cstr(name), "pid": pid, "tid": tid, "uid": uid,
                   "len": length, "latency_ns": delta}
            if data:
                obj["data_hex"] = bytes(row[9][:captured]).hex()
                obj["truncated"] = length - captured
            out.append(obj)
        return out
    return lines, objects


def header(extra: bool, latency: bool) -> str:
    text = "%-12s %-18s %-16s %-7s %-7s" % ("FUNC", "TIME(s)", "COMM", "PID", "LEN")
    if extra:
        text += " %-7s %-7s" % ("UID", "TID")
    if latency:
        text += " %-7s" % "LAT(ms)"
    return text


@click.command("sslsniff", context_settings={**options.TOOL_CONTEXT,
                                             "ignore_unknown_options": True})
@options.pid_option("-p")
@click.option("-u", "--uid", type=click.IntRange(0, 2**32 - 2), default=None,
              help="Sniff this UID only.")
@click.option("-x", "--extra", is_flag=True, help="Show extra fields (UID, TID).")
@click.option("-c", "--comm", default=None, help="Sniff only commands named exactly this.")
@click.option("-o", "--no-openssl", "openssl", is_flag=True, default=True, flag_value=False,
              help="Do not show OpenSSL calls.")
@click.option("-g", "--no-gnutls", "gnutls", is_flag=True, default=True, flag_value=False,
              help="Do not show GnuTLS calls.")
@click.option("-n", "--no-nss", "nss", is_flag=True, default=True, flag_value=False,
              help="Do not show NSS calls (NSS is never probed: accepted for BCC's sake).")
@click.option("-l", "--latency", is_flag=True, help="Show each call's latency (LAT(ms)).")
@click.option("--data", is_flag=True,
              help="Show the plaintext of each call (BCC's default), up to --max-buffer-size.")
@click.option("--hexdump", is_flag=True, help="Show the plaintext as hex (implies --data).")
@click.option("--max-buffer-size", type=click.IntRange(1, MAX_DATA), default=8192,
              show_default=True, help="Bytes of plaintext captured per call (with --data).")
@click.option("--lib", default=None, metavar="PATH",
              help="The OpenSSL libssl to probe (default: libssl as -p's process maps it "
                   "or the linker finds it).")
@options.duration_option()    # BCC's -d is --debug
@event_tools.stream_options
def command(pid, uid, extra, comm, openssl, gnutls, nss, latency, data, hexdump,
            max_buffer_size, lib, duration, buffer_pages, out, command):
    """Sniff OpenSSL and GnuTLS reads and writes: FUNC TIME(s) COMM PID LEN.

    --data shows the plaintext too."""
    if lib is not None and not openssl:
        raise UsageError("--lib names the OpenSSL libssl to probe, which -o leaves out")
    data = data or hexdump
    if max_buffer_size != 8192 and not data:
        raise UsageError("--max-buffer-size sets how much plaintext --data shows: give --data")
    data_size = max_buffer_size if data else 0

    def printer() -> event_tools.Printer:
        lines, objects = formatters(extra, latency, comm, data, hexdump)
        return event_tools.Printer(out, header(extra, latency), lines, objects)

    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, uid=uid, data_size=data_size, lib=lib,
                                         openssl=openssl, gnutls=gnutls,
                                         buffer_pages=buffer_pages),
                printer, duration=duration,
                message="Tracing TLS reads and writes... Hit Ctrl-C to end.")
