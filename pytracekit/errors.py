"""One error hierarchy for every tool.

Each error carries the one line a user sees and the exit status it maps to.
`pytracekit.cli.command` turns any of these into that line and status; anything else
is a bug and is shown as a traceback only with --verbose.
"""
from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class PytracekitError(Exception):
    """Base class: `str(err)` is the single line shown to the user."""

    exit_status = EXIT_RUNTIME

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        # Long diagnostics (compiler output, verifier log) shown with --verbose.
        self.detail = detail


class UsageError(PytracekitError):
    """Bad input from the user: malformed spec, filter, option."""

    exit_status = EXIT_USAGE


class SpecError(UsageError):
    """A probe spec or expression that does not parse."""


class NotFoundError(PytracekitError):
    """A named thing does not exist: tracepoint, function, binary, pid."""


class NotSupportedError(PytracekitError):
    """The running kernel lacks a feature (kprobes, fentry, hardware PMCs, BTF)."""


class PrivilegeError(PytracekitError):
    """Not root / missing capability."""


class CompileError(PytracekitError):
    """Clang rejected a BPF program; detail holds the compiler output."""


class VerifierError(PytracekitError):
    """The kernel verifier rejected a program; detail holds the log's tail."""


class DryRunComplete(Exception):
    """Raised by the loader once a dry run has compiled and loaded every program
    (here, not in loader.py, so cli.main catches it without importing the loader)."""

    def __init__(self, loaded: list[str]) -> None:
        super().__init__(f"dry run: compiled and loaded {len(loaded)} BPF program(s): "
                         + ", ".join(loaded) if loaded else
                         "dry run: nothing to compile (no BPF program is needed)")
        self.loaded = loaded


class EbpfPrinted(Exception):
    """Raised after --ebpf printed a program instead of loading it."""


def tail(text: str, lines: int = 8) -> str:
    """The last non-empty lines of a long log (verifier logs run to thousands)."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
