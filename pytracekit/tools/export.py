"""export: run tools continuously and serve their results as Prometheus metrics.

    pytracekit export --config export.toml
    pytracekit export --tool runqlat --tool 'funccount,spec=c:malloc' --listen :9435

Each scrape reads the tools' cumulative maps (nothing is cleared), so counters
only grow and Prometheus' rate() works; see docs/tools/export.md.
"""
from __future__ import annotations

import click

from ..cli import options
from ..engine import settings
from ..fleet import config as fleet_config
from ..fleet.exporter import (ToolCollector, close_all, json_objs, metrics_url, serve,
                               start_tools)
from ..fleet.sources import SOURCES
from ..errors import UsageError
from ..engine.runner import Target, announce, run_until_done

DRY_RUN_ARGS = ["--tool", "offcputime"]


def load_config(config_path: str | None, tools: tuple[str, ...], listen: str | None,
                label_limit: int | None) -> fleet_config.Config:
    config = fleet_config.from_toml(config_path) if config_path else fleet_config.Config()
    config.tools += [fleet_config.parse_tool_option(t) for t in tools]
    if listen:
        config.listen = listen
    if label_limit:
        config.label_limit = label_limit
    if not config.tools:
        raise UsageError("export: no tools to run: give --config FILE with [[tool]] tables "
                         f"or --tool NAME (one of {', '.join(sorted(SOURCES))})")
    return config


@click.command("export", context_settings=options.TOOL_CONTEXT)
@click.option("-c", "--config", "config_path", metavar="FILE", default=None,
              help="TOML file: listen, label_limit and [[tool]] tables.")
@click.option("-t", "--tool", "tools", metavar="NAME[,KEY=VALUE...]", multiple=True,
              help="Run this tool too (repeatable), e.g. 'funccount,spec=c:malloc'.")
@click.option("--listen", metavar="HOST:PORT", default=None,
              help=f"Serve /metrics here (default {fleet_config.DEFAULT_LISTEN}).")
@click.option("--label-limit", type=click.IntRange(min=1), default=None,
              help="Label values kept per metric before the rest go to 'other' "
                   f"(default {fleet_config.DEFAULT_LABEL_LIMIT}).")
@click.option("--list-tools", is_flag=True, help="List the tools export can run and exit.")
@options.duration_option("-d")
@options.output_options()
@options.standard
def command(config_path, tools, listen, label_limit, list_tools, duration, out) -> None:
    """Serve tools' results as Prometheus metrics until Ctrl-C.

    \b
    Examples:
      pytracekit export --tool runqlat --tool syscount
      pytracekit export --config /etc/pytracekit/export.toml
      pytracekit export --tool 'funclatency,spec=/usr/bin/app:handle' --listen 0.0.0.0:9435
    """
    if list_tools:
        for name in sorted(SOURCES):
            src = SOURCES[name]
            keys = ", ".join(f"{k}={o.default!r}" if not o.required else f"{k} (required)"
                             for k, o in src.options.items())
            click.echo(f"{name:<12} {src.help}" + (f"; options: {keys}" if keys else ""))
        return
    config = load_config(config_path, tools, listen, label_limit)
    from prometheus_client import CollectorRegistry
    registry = CollectorRegistry(auto_describe=False)
    mode = settings.current()
    # Bind first: a port in use is reported before any BPF is compiled.
    server = None if (mode.ebpf or mode.dry_run) else serve(config.listen, registry)
    try:
        running = start_tools(config)
        collector = ToolCollector(running)
        try:
            registry.register(collector)
            # The bound port, not the asked one: `--listen 127.0.0.1:0` lets the kernel choose.
            announce(f"Serving metrics of {', '.join(r.name for r in running)} on "
                     f"{metrics_url(server, config.listen)} ... Hit Ctrl-C to end.")
            run_until_done(Target(), duration=duration, poll=collector.poll)
            out.emit(json=lambda: json_objs(collector))    # the text form: the metrics served
            for run in running:
                if run.read_errors:
                    click.echo(f"export: {run.read_errors} reads of {run.name} failed "
                               f"(last: {run.last_error})", err=True)
        finally:
            close_all(running)
    finally:
        if server is not None:
            server.shutdown()
