"""The running side of `export`: started tools, a Collector that reads them at
scrape time, and the HTTP endpoint prometheus_client serves it on."""
from __future__ import annotations

import errno
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily

from ..errors import PytracekitError, UsageError
from ..model import LossReport, StackProfile
from .config import Config, ToolConfig
from .metrics import loss_families
from .sources import Limits


@dataclass
class Running:
    """One started [[tool]]: its session, options and label limiters."""

    config: ToolConfig
    session: Any
    limits: Limits
    read_errors: int = 0
    last_error: str = ""

    @property
    def name(self) -> str:
        return self.config.source.name

    def families(self) -> tuple[list[Any], LossReport]:
        result = self.session.read()
        families = list(self.config.source.families(result, self.limits, self.config.options))
        loss = result.loss if isinstance(result, StackProfile) else self.session.loss()
        return families, loss


@dataclass(eq=False)
class ToolCollector:
    """A prometheus_client collector: every scrape reads every tool's cumulative
    results. One lock serializes scrapes with the main loop's polling."""

    running: list[Running]
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_losses: dict[str, LossReport] = field(default_factory=dict)

    def collect(self) -> Iterable[Any]:
        by_name: dict[str, Any] = {}
        losses: dict[str, LossReport] = {}
        with self.lock:
            for run in self.running:
                try:
                    families, loss = run.families()
                except Exception as exc:   # one broken read must not end the scrape
                    run.read_errors += 1
                    run.last_error = f"{type(exc).__name__}: {exc}"
                    if run.read_errors == 1:   # say it once now, the count at the end
                        print(f"export: reading {run.name} failed: {run.last_error}",
                              file=sys.stderr, flush=True)
                    continue
                losses[run.name] = losses.get(run.name, LossReport()) + loss
                for family in families:   # two [[tool]]s of one kind share families
                    if family.name in by_name:
                        by_name[family.name].samples.extend(family.samples)
                    else:
                        by_name[family.name] = family
        self.last_losses = losses
        for family in by_name.values():
            family.samples = merged_samples(family.samples)
        yield from by_name.values()
        yield from loss_families(losses)
        errors = CounterMetricFamily("pytracekit_export_read_errors",
                                     "Scrapes where reading a tool failed.", labels=["tool"])
        per_tool: dict[str, int] = {}
        for run in self.running:
            per_tool[run.name] = per_tool.get(run.name, 0) + run.read_errors
        for tool, count in sorted(per_tool.items()):
            errors.add_metric([tool], count)
        yield errors

    def poll(self, timeout_ms: int) -> None:
        """Let tools that stream (new-pid rings of stack tools) consume events."""
        import time
        with self.lock:
            for run in self.running:
                poll = getattr(run.session, "poll", None)
                if callable(poll):
                    poll(0)
        time.sleep(timeout_ms / 1000)


def merged_samples(samples: list[Any]) -> list[Any]:
    """Samples of one family with equal name and labels added up: two [[tool]]s
    of the same kind may measure the same thing (same spec twice)."""
    acc: dict[tuple, Any] = {}
    for sample in samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        prev = acc.get(key)
        acc[key] = sample if prev is None else prev._replace(value=prev.value + sample.value)
    return list(acc.values())


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or PORT (on 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535 or not host:
        raise UsageError(f"bad --listen '{text}': expected HOST:PORT, e.g. 127.0.0.1:9435")
    return host, number


def serve(listen: str, registry: CollectorRegistry) -> Any:
    host, port = parse_listen(listen)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PytracekitError(f"cannot listen on {host}:{port}: the port is in use "
                                  "(choose another with --listen)") from None
        raise PytracekitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return server


def metrics_url(server: Any, listen: str) -> str:
    """Where the server listens, with the port the kernel chose for port 0."""
    if server is None:    # --dry-run / --ebpf: nothing bound
        host, port = parse_listen(listen)
    else:
        host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/metrics"


def start_tools(config: Config) -> list[Running]:
    running: list[Running] = []
    try:
        for tool in config.tools:
            module = tool.source.load_module()
            try:
                session = tool.source.start(module, dict(tool.options))
            except TypeError as exc:   # the tool's start() changed under its Source entry
                raise PytracekitError(f"{tool.where}: cannot start '{tool.source.name}' with "
                                      f"these options: {exc}") from None
            running.append(Running(tool, session, Limits(config.label_limit)))
    except BaseException:
        close_all(running)
        raise
    return running


def close_all(running: list[Running]) -> None:
    for run in reversed(running):
        try:
            run.session.close()
        except Exception:   # keep detaching the others
            pass


def json_objs(collector: ToolCollector) -> list[dict[str, Any]]:
    """The final metrics as JSON objects (export --json)."""
    objs = []
    for family in collector.collect():
        for sample in family.samples:
            objs.append({"type": "metric", "name": sample.name, "kind": family.type,
                         "labels": dict(sample.labels), "value": sample.value})
    for tool, loss in sorted(collector.last_losses.items()):
        objs.append({"type": "loss", "tool": tool, **loss.as_dict()})
    return objs
