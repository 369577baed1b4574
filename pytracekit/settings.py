"""Process-wide run settings shared by the loader and every tool.

Set once by the CLI from --verbose/--ebpf/--dry-run before a tool runs; the
loader reads them so tools need no code of their own for these modes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Settings:
    verbose: bool = False
    ebpf: bool = False       # print the BPF C and exit
    dry_run: bool = False    # compile and load every program, attach nothing, exit


_current = Settings()


def current() -> Settings:
    return _current


def update(**changes: bool) -> Settings:
    global _current
    _current = replace(_current, **changes)
    return _current
