"""Dataclass methods compiled once, kept between runs (issue 17).

A start makes ~40 dataclasses (~10 ms of CPU), most of it compiling the
methods each one generates (__init__, __repr__, __eq__, ...) from text with
exec. From install() (__main__, before the imports) until done() (attached;
at exit for a run that never attaches), `dataclasses` finds this module's
exec before the builtin one: for a text it has seen, it runs the code object
compiled from exactly that text before; else it compiles (as exec would).
Once attached, what was compiled is added to the file: one per bytecode
version and command in the cache root, read and written under the caches'
trust rule (kernel.headers.read_trusted), as its code runs as the caller.
Any problem with it means compiling, never an error.
"""
from __future__ import annotations

import marshal
import sys
from typing import Any

MAX_BYTES = 4 << 20   # a command's take ~0.2 MB; a bigger file starts afresh
_known: dict[str, bytes] = {}   # text -> marshalled code object
_new: dict[str, bytes] = {}
_installed = False
_command = ""


def _path():
    from importlib.util import MAGIC_NUMBER   # the bytecode version marshal writes
    from ..kernel.headers import cache_root
    return cache_root() / f"dataclass-methods-{MAGIC_NUMBER.hex()}-{_command}.marshal"


def _exec(text: Any, globals_: Any = None, locals_: Any = None) -> None:
    if not isinstance(text, str):
        exec(text, globals_, locals_)   # pylint: disable=exec-used
        return
    blob = _known.get(text)
    try:
        code = marshal.loads(blob) if blob is not None else None
    except (EOFError, ValueError, TypeError):
        code = None
    if code is None:   # dont_inherit: as exec compiles a text (this file's __future__ aside)
        code = compile(text, "<string>", "exec", dont_inherit=True)
        _new[text] = marshal.dumps(code)
    exec(code, globals_, locals_)   # pylint: disable=exec-used


def install(command: str) -> None:
    """`command`: the command line's first word that is not an option."""
    global _installed, _command
    _command = "".join(c for c in command if c.isalnum() or c == "_")[:32]
    import atexit
    import dataclasses
    from ..kernel.headers import read_trusted
    try:
        data = read_trusted(_path())
        table = marshal.loads(data) if data and len(data) <= MAX_BYTES else {}
    except (OSError, EOFError, ValueError, TypeError):
        table = {}
    if isinstance(table, dict):
        _known.update((k, v) for k, v in table.items()
                      if isinstance(k, str) and isinstance(v, bytes))
    dataclasses.exec = _exec   # a module global: found before the builtin
    _installed = True
    atexit.register(done, keep=False)   # only what attaches is kept: no file per typo


def done(keep: bool = True) -> None:
    """Dataclasses compile as usual again; what was compiled is kept (`keep`), once."""
    global _installed
    if not _installed:
        return
    _installed = False
    dataclasses = sys.modules["dataclasses"]
    if getattr(dataclasses, "exec", None) is _exec:
        del dataclasses.exec
    if _new and keep:
        from ..kernel.headers import write_cache_file
        data = marshal.dumps({**_known, **_new})
        if len(data) > MAX_BYTES:
            data = marshal.dumps(dict(_new))
        write_cache_file(_path(), data)
        _known.update(_new)
        _new.clear()
