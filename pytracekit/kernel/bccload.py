"""Import BCC without loading its compiler until something compiles.

BCC's Python loads libbcc.so.0 at import, and with it LLVM and clang
(150 MB of shared libraries, 20-50 ms of dynamic linking at every start).
A program from the program cache (engine/progcache.py) never compiles: all
it calls (bpf(2) wrappers, attaching, perf and ring buffers, USDT,
symbols) is also in libbcc_bpf.so.0, the same BCC build without the
compiler. So `bcc.libbcc.lib` is made a `_Libbcc`: each function comes from
libbcc_bpf.so.0 when it has it, and the rest (the compiled module's: BPF()
compiling, its function and table queries) from libbcc.so.0, loaded at the
first call of one of them. Each function always comes from the same
library, and what one library's functions make (a module, a perf reader, a
USDT context) is only handed to that library's. No libbcc_bpf.so.0: BCC
as it comes.
"""
from __future__ import annotations

import ctypes
import sys
import threading
from typing import Any

LIBBCC = "libbcc.so.0"
LIBBCC_BPF = "libbcc_bpf.so.0"
_importing = threading.Lock()   # ctypes.CDLL is replaced while bcc.libbcc runs
_CDLL = ctypes.CDLL


def import_bcc() -> Any:
    """`import bcc`, with its library deferred as above if this is the first
    import (call tracefs.tracefs_root() first: BCC reads its path at import)."""
    with _importing:
        if "bcc" in sys.modules:
            return sys.modules["bcc"]
        return _import_deferring_libbcc()


def _import_deferring_libbcc() -> Any:
    saved = ctypes.CDLL

    def cdll(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == LIBBCC:
            try:
                return _Libbcc(_CDLL(LIBBCC_BPF, *args, **kwargs), args, kwargs)
            except OSError:
                pass
        return _CDLL(name, *args, **kwargs)
    ctypes.CDLL = cdll   # type: ignore[misc]  # only while bcc.libbcc runs
    try:
        import bcc
    finally:
        ctypes.CDLL = saved   # type: ignore[misc]
    return bcc


class _Libbcc:
    """libbcc's functions, as a ctypes library is used (`lib.f.restype = ...`,
    `lib.f(...)`), from libbcc_bpf.so.0 or else libbcc.so.0 at first call."""

    def __init__(self, lean: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._lean = lean
        self._args, self._kwargs = args, kwargs
        self._full: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):   # ours (not yet set: copy, pickle) or Python's
            raise AttributeError(name)
        try:
            fn = getattr(self._lean, name)
        except AttributeError:
            fn = _Deferred(self, name)
        setattr(self, name, fn)   # as ctypes does: declarations stick to one object
        return fn

    def full(self) -> Any:
        if self._full is None:
            self._full = _CDLL(LIBBCC, *self._args, **self._kwargs)
        return self._full


class _Deferred:
    """A function only libbcc.so.0 has: its declarations kept until the first
    call finds it there (an AttributeError then if it has none by that name)."""

    def __init__(self, owner: _Libbcc, name: str) -> None:
        self.__dict__.update(_owner=owner, _name=name, _declared={}, _fn=None)

    def __setattr__(self, attr: str, value: Any) -> None:
        self._declared[attr] = value
        if self._fn is not None:
            setattr(self._fn, attr, value)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        if attr in self._declared:
            return self._declared[attr]
        return getattr(self._resolve(), attr)

    def _resolve(self) -> Any:
        if self._fn is None:
            fn = getattr(self._owner.full(), self._name)
            for attr, value in self._declared.items():
                setattr(fn, attr, value)
            self.__dict__["_fn"] = fn
        return self._fn

    def __call__(self, *args: Any) -> Any:
        return self._resolve()(*args)
