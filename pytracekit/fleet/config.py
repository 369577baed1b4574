"""export's configuration: a TOML file and/or --tool options, checked up front.

    listen = "127.0.0.1:9435"     # optional; --listen wins
    label_limit = 50              # label values kept per metric before `other`

    [[tool]]
    name = "funclatency"
    spec = "/usr/bin/app:handle_request"

Every problem is one line naming file:line and the key.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .sources import Source, source

TOP_KEYS = {"listen": str, "label_limit": int, "tool": list}
DEFAULT_LISTEN = "127.0.0.1:9435"
DEFAULT_LABEL_LIMIT = 50


@dataclass
class ToolConfig:
    source: Source
    options: dict[str, Any]
    where: str                      # "file:line" or "--tool ..." for messages


@dataclass
class Config:
    tools: list[ToolConfig] = field(default_factory=list)
    listen: str = DEFAULT_LISTEN
    label_limit: int = DEFAULT_LABEL_LIMIT


def _line_of(text: str, table_index: int | None, key: str) -> int:
    """The line where `key` is set: at top level, or inside the n-th [[tool]]."""
    lines = text.splitlines()
    start, seen = 0, -1
    if table_index is not None:
        for i, line in enumerate(lines):
            if re.match(r"\s*\[\[\s*tool\s*\]\]", line):
                seen += 1
                if seen == table_index:
                    start = i
                    break
    for i in range(start + (table_index is not None), len(lines)):
        if table_index is not None and re.match(r"\s*\[", lines[i]):
            break
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return start + 1


def load_file(path: str) -> tuple[dict[str, Any], str]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror}") from None
    text = raw.decode(errors="replace")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line L, column C)"; keep that, add the file.
        found = re.search(r"at line (\d+)", str(exc))
        line = found.group(1) if found else str(max(1, len(text.splitlines())))
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        where = f"{path}:{line}"
        raise UsageError(f"{where}: bad TOML: {reason}") from None


def _check_value(where: str, key: str, value: Any, kind: type) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise UsageError(f"{where}: '{key}' must be {_kind_name(kind)}, not {value!r}")
    return value


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "true or false",
            list: "a list of [[tool]] tables"}.get(kind, kind.__name__)


def tool_options(src: Source, given: dict[str, Any], where_of) -> dict[str, Any]:
    """Given keys checked against the source's options, defaults filled in."""
    out = {}
    for key, value in given.items():
        if key == "name":
            continue
        if key not in src.options:
            known = ", ".join(sorted(src.options)) or "none"
            raise UsageError(f"{where_of(key)}: unknown key '{key}' for tool '{src.name}' "
                             f"(it takes: {known})")
        out[key] = _check_value(where_of(key), key, value, src.options[key].type)
    for key, opt in src.options.items():
        if key not in out:
            if opt.required:
                raise UsageError(f"{where_of('name')}: tool '{src.name}' needs '{key}' "
                                 f"({opt.help})")
            out[key] = opt.default
    return out


def from_toml(path: str) -> Config:
    data, text = load_file(path)
    config = Config()
    for key, value in data.items():
        if key not in TOP_KEYS:
            raise UsageError(f"{path}:{_line_of(text, None, key)}: unknown key '{key}' "
                             f"(use {', '.join(TOP_KEYS)} and [[tool]] tables)")
        _check_value(f"{path}:{_line_of(text, None, key)}", key, value, TOP_KEYS[key])
    config.listen = data.get("listen", DEFAULT_LISTEN)
    config.label_limit = data.get("label_limit", DEFAULT_LABEL_LIMIT)
    if config.label_limit < 1:
        raise UsageError(f"{path}:{_line_of(text, None, 'label_limit')}: 'label_limit' must "
                         "be at least 1")
    for n, table in enumerate(data.get("tool", [])):
        def where_of(key: str, n: int = n) -> str:
            return f"{path}:{_line_of(text, n, key)}"
        if not isinstance(table, dict):
            raise UsageError(f"{path}: 'tool' must be [[tool]] tables")
        if "name" not in table:
            raise UsageError(f"{where_of('name')}: [[tool]] #{n + 1} has no 'name'")
        name = _check_value(where_of("name"), "name", table["name"], str)
        src = _known(name, where_of("name"))
        config.tools.append(ToolConfig(src, tool_options(src, table, where_of), where_of("name")))
    return config


def _known(name: str, where: str) -> Source:
    try:
        src = source(name)
        src.load_module()
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.message}") from None
    return src


def parse_tool_option(text: str) -> ToolConfig:
    """--tool NAME[,key=value...]: values are TOML literals, or bare strings."""
    name, *pairs = [p.strip() for p in text.split(",")]
    where = f"--tool {text}"
    src = _known(name, where)
    given: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"{where}: expected key=value, got '{pair}'")
        given[key.strip()] = _literal(value.strip(), src.options.get(key.strip()))
    return ToolConfig(src, tool_options(src, given, lambda _k: where), where)


def _literal(value: str, option: Any) -> Any:
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value
    if option is not None and option.type is str:
        return value
    return parsed
