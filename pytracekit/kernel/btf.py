"""The kernel's BTF, read through libbpf (libbpf.so.1 ships with libbcc).

Only what pytracekit needs: the names of every type, and C text for a chosen
set of types with everything they depend on (libbpf's btf_dump orders
definitions and emits forward declarations for types only pointed to).
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from typing import Iterable

from ..errors import NotSupportedError

# Overridable so tests can simulate a kernel without BTF.
VMLINUX_BTF = os.environ.get("PYTRACEKIT_VMLINUX_BTF", "/sys/kernel/btf/vmlinux")

# BTF kinds (include/uapi/linux/btf.h)
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_FUNC, KIND_FUNC_PROTO, KIND_ENUM64 = 7, 8, 12, 13, 19
NAMED_KINDS = {KIND_STRUCT: "struct", KIND_UNION: "union", KIND_ENUM: "enum",
               KIND_ENUM64: "enum", KIND_TYPEDEF: "typedef"}


class _BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32),
                ("size_or_type", ctypes.c_uint32)]


class _BtfEnum(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("val", ctypes.c_int32)]


class _BtfParam(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32)]


class _BtfEnum64(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("val_lo32", ctypes.c_uint32),
                ("val_hi32", ctypes.c_uint32)]


_PRINTF = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)


@lru_cache(maxsize=1)
def _libs():
    try:
        libbpf = ctypes.CDLL("libbpf.so.1")
    except OSError as exc:
        raise NotSupportedError(
            "libbpf.so.1 not found: install libbpf1 (it comes with python3-bpfcc)") from exc
    from ctypes.util import find_library   # here: it imports shutil and subprocess
    libc = ctypes.CDLL(find_library("c"))
    libbpf.btf__parse.restype = ctypes.c_void_p
    libbpf.btf__parse.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    libbpf.btf__type_cnt.restype = ctypes.c_uint32
    libbpf.btf__type_cnt.argtypes = [ctypes.c_void_p]
    libbpf.btf__type_by_id.restype = ctypes.POINTER(_BtfType)
    libbpf.btf__type_by_id.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    libbpf.btf__name_by_offset.restype = ctypes.c_char_p
    libbpf.btf__name_by_offset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    libbpf.btf__free.argtypes = [ctypes.c_void_p]
    libbpf.btf_dump__new.restype = ctypes.c_void_p
    libbpf.btf_dump__new.argtypes = [ctypes.c_void_p, _PRINTF, ctypes.c_void_p, ctypes.c_void_p]
    libbpf.btf_dump__dump_type.restype = ctypes.c_int
    libbpf.btf_dump__dump_type.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    libbpf.btf_dump__free.argtypes = [ctypes.c_void_p]
    libc.vsnprintf.restype = ctypes.c_int
    libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    return libbpf, libc


def btf_available(path: str = VMLINUX_BTF) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


class KernelBtf:
    """Read-only view of one BTF file. Build it once; it indexes all names."""

    def __init__(self, path: str = VMLINUX_BTF) -> None:
        if not btf_available(path):
            raise NotSupportedError(f"no kernel BTF at {path} (needs CONFIG_DEBUG_INFO_BTF=y)")
        self._libbpf, self._libc = _libs()
        self._btf = self._libbpf.btf__parse(path.encode(), None)
        if not self._btf:
            raise NotSupportedError(f"libbpf could not parse the BTF at {path}")
        self.path = path
        self.by_name: dict[str, list[int]] = {}   # "struct task_struct" / "u32" -> ids
        self.enumerators: dict[str, int] = {}     # enumerator name -> enum type id
        self.funcs: dict[str, int] = {}           # function name -> its FUNC type id
        self._index()

    def close(self) -> None:
        if self._btf:
            self._libbpf.btf__free(self._btf)
            self._btf = None

    def _name(self, off: int) -> str:
        raw = self._libbpf.btf__name_by_offset(self._btf, off)
        return raw.decode() if raw else ""

    def _index(self) -> None:
        count = self._libbpf.btf__type_cnt(self._btf)
        for type_id in range(1, count):
            t = self._libbpf.btf__type_by_id(self._btf, type_id).contents
            kind = (t.info >> 24) & 0x1F
            vlen = t.info & 0xFFFF
            name = self._name(t.name_off)
            if kind == KIND_FUNC:
                self.funcs.setdefault(name, type_id)
                continue
            if kind in (KIND_ENUM, KIND_ENUM64):
                member_type = _BtfEnum if kind == KIND_ENUM else _BtfEnum64
                base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
                for i in range(vlen):
                    member = member_type.from_address(base + i * ctypes.sizeof(member_type))
                    self.enumerators.setdefault(self._name(member.name_off), type_id)
            prefix = NAMED_KINDS.get(kind)
            if prefix and name:
                key = name if prefix == "typedef" else f"{prefix} {name}"
                self.by_name.setdefault(key, []).append(type_id)

    def function_params(self, name: str) -> tuple[str, ...] | None:
        """Parameter names of kernel function `name` in order ("" where BTF has
        none), or None when BTF does not know the function. fentry/fexit
        programs read argument i at ctx[i] and fexit the return value after
        the last one, so the count matters."""
        type_id = self.funcs.get(name)
        if type_id is None:
            return None
        func = self._libbpf.btf__type_by_id(self._btf, type_id).contents
        proto = self._libbpf.btf__type_by_id(self._btf, func.size_or_type).contents
        if (proto.info >> 24) & 0x1F != KIND_FUNC_PROTO:
            return None
        base = ctypes.addressof(proto) + ctypes.sizeof(_BtfType)
        params = (_BtfParam.from_address(base + i * ctypes.sizeof(_BtfParam))
                  for i in range(proto.info & 0xFFFF))
        return tuple(self._name(p.name_off) for p in params)

    def type_count(self) -> int:
        return self._libbpf.btf__type_cnt(self._btf)

    def type_ids(self, names: Iterable[str]) -> list[int]:
        """Ids for names like 'struct sock', 'u64' or an enumerator 'TCP_CLOSE'."""
        ids: list[int] = []
        for name in names:
            if name in self.by_name:
                ids.append(self.by_name[name][0])
            elif name in self.enumerators:
                ids.append(self.enumerators[name])
        return ids

    def dump_c(self, wanted: Iterable[int]) -> str:
        """C definitions of `wanted` and their dependencies, in order.

        libbpf's btf_dump emits each top-level declaration followed by a blank
        line; `headers.drop_definitions` relies on that to leave some out.
        """
        chunks: list[bytes] = []
        buf = ctypes.create_string_buffer(1 << 16)

        def printf(_ctx, fmt, args):
            n = self._libc.vsnprintf(buf, len(buf), fmt, args)
            if n > 0:
                chunks.append(buf.raw[:min(n, len(buf) - 1)])

        callback = _PRINTF(printf)
        dump = self._libbpf.btf_dump__new(self._btf, callback, None, None)
        if not dump:
            raise NotSupportedError("libbpf btf_dump__new failed")
        try:
            for type_id in wanted:
                self._libbpf.btf_dump__dump_type(dump, type_id)
        finally:
            self._libbpf.btf_dump__free(dump)
        return b"".join(chunks).decode()


@lru_cache(maxsize=1)
def vmlinux() -> KernelBtf:
    return KernelBtf(VMLINUX_BTF)
