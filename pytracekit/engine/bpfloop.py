"""bpf_loop() callbacks through BCC 0.26, which compiles them but does not
link them: the callback's address in the caller is left as `ld_imm64 r2, 0`
(no BPF_PSEUDO_FUNC relocation), so the verifier refuses the call
(`R2 type=scalar expected=func`). Linked here instead, at load:

- the callback is a non-static function named `bpf_loop_cb__NAME` taking
  one unused pointer (BCC then compiles it as a function of its own and
  rewrites nothing in it; its state lives in a map, not in bpf_loop's ctx
  argument, which BCC would read as a probe argument);
- the caller passes `PTK_LOOP_CB(ID)` (bpf/pytracekit.h) for the callback:
  an `ld_imm64 r2, TAG | ID` whose next call is bpf_loop, ID naming the
  callback in CALLBACKS (one program may have several: profile walks CFI
  and Python frames). A program with one callback may also name it as
  such: BCC leaves that reference `ld_imm64 r2, 0`;
- each site becomes a BPF_PSEUDO_FUNC reference to its callback's
  instructions, appended after the caller's;
- the kernel wants BTF func_info for a program with subprograms: a minimal
  BTF (`long f(void *ctx)`, the caller global, the callbacks static) is
  loaded with it.

Why: a bounded loop is verified once per iteration, a bpf_loop callback
once (issue 13: the Python frame walk cost 0.2-0.4 s of verifier time per
launch; issue 17: the CFI walk of 127 frames ~0.3 s). Used by BCC's own
loads (linking_bpf) and by the program cache."""
from __future__ import annotations

import os
import struct
from typing import Any

CALLBACK_PREFIX = b"bpf_loop_cb__"
_LD_IMM64, _CALL, _EXIT = 0x18, 0x85, 0x95
_BPF_LOOP = 181                 # enum bpf_func_id
_PSEUDO_FUNC = 4                # ld_imm64 src_reg: the address of a subprogram
_R2 = 2
_PROG_TYPE_TRACING = 26     # fentry/fexit


# PTK_LOOP_CB(ID) in bpf/pytracekit.h: the upper half of the tag, and each ID's callback
TAG_HIGH = 0x70746B00
CALLBACKS = {1: CALLBACK_PREFIX + b"py_step", 2: CALLBACK_PREFIX + b"unwind_step",
             3: CALLBACK_PREFIX + b"py_tstate_step", 4: CALLBACK_PREFIX + b"py_hash_step"}


def callback_names(functions: list[bytes]) -> list[bytes]:
    return [f for f in functions if f.startswith(CALLBACK_PREFIX)]


def sites(insns: bytes) -> list[tuple[int, int]]:
    """(index, ID) of each unlinked callback address: `ld_imm64 r2` of a tag
    (ID) or of 0 (ID 0: the program's one callback, named in the C), with
    bpf_loop as the next call and r2 not written in between."""
    found = []
    count = len(insns) // 8
    at = 0
    while at < count:
        code, regs, _off, imm = struct.unpack_from("<BBhi", insns, at * 8)
        if code != _LD_IMM64:
            at += 1
            continue
        high = struct.unpack_from("<I", insns, at * 8 + 12)[0]
        ident = imm & 0xFFFFFFFF
        named = (high, ident) == (0, 0) or (high == TAG_HIGH and ident in CALLBACKS)
        if regs == _R2 and named and _next_call(insns, at + 2) == _BPF_LOOP:
            found.append((at, ident))
        at += 2
    return found


def _next_call(insns: bytes, at: int) -> int | None:
    """The helper id of the first call from `at`, None if r2 is written or
    control leaves straight-line code first."""
    while at * 8 < len(insns):
        code, regs, _off, imm = struct.unpack_from("<BBhi", insns, at * 8)
        if code == _CALL:
            return imm if regs >> 4 == 0 else None
        cls = code & 0x07
        if cls in (0x05, 0x06) or code == _EXIT:     # jumps: not straight-line
            return None
        if cls in (0x04, 0x07, 0x00, 0x01) and regs & 0x0F == _R2:   # alu, ld, ldx into r2
            return None
        at += 2 if code == _LD_IMM64 else 1
    return None


def link(caller: bytes, callbacks: dict[bytes, bytes]) -> tuple[bytes, bytes] | None:
    """(instructions, bpf_func_info records) of `caller` with the callbacks
    its sites name (callbacks: name -> instructions) appended, each once, and
    every site pointing at its own; None when the caller has no site. A site
    whose callback the program lacks is a ValueError (the verifier would
    only say `R2 type=scalar expected=func`)."""
    at_sites = sites(caller)
    if not at_sites:
        return None
    out = bytearray(caller)
    starts: dict[bytes, int] = {}
    tail = b""
    records = struct.pack("<II", 0, _FUNC_CALLER)
    for at, ident in at_sites:
        name = CALLBACKS.get(ident) if ident else _only(callbacks)
        if name not in callbacks:
            raise ValueError(f"bpf_loop callback {ident} ({name!r}) is not in the program")
        if name not in starts:
            starts[name] = (len(caller) + len(tail)) // 8
            tail += callbacks[name]
            records += struct.pack("<II", starts[name], _FUNC_CALLBACK)
        struct.pack_into("<BBhi", out, at * 8, _LD_IMM64, _R2 | _PSEUDO_FUNC << 4, 0,
                         starts[name] - at - 1)
        struct.pack_into("<i", out, at * 8 + 12, 0)
    return bytes(out) + tail, records


def _only(callbacks: dict[bytes, bytes]) -> bytes | None:
    """The callback a `ld_imm64 r2, 0` site names: the program's only one."""
    if len(callbacks) > 1:
        raise ValueError(f"more than one bpf_loop callback ({sorted(callbacks)}): "
                         "name each call's with PTK_LOOP_CB(ID)")
    return next(iter(callbacks), None)


# BTF: 1 long, 2 void *, 3 long (void *ctx), 4 FUNC caller (global), 5 FUNC callback (static)
_FUNC_CALLER, _FUNC_CALLBACK = 4, 5


def _btf() -> bytes:
    strings = b"\0long\0ctx\0caller\0callback\0"
    types = (struct.pack("<IIII", 1, 1 << 24, 8, 1 << 24 | 64)          # INT long, signed
             + struct.pack("<III", 0, 2 << 24, 0)                         # PTR void
             + struct.pack("<IIIII", 0, 13 << 24 | 1, 1, 6, 2)            # FUNC_PROTO
             + struct.pack("<III", 10, 12 << 24 | 1, 3)                   # FUNC, global
             + struct.pack("<III", 17, 12 << 24 | 0, 3))                  # FUNC, static
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                         len(strings))
    return header + types + strings


def bcc_prog_name(func_name: bytes) -> bytes:
    """The name BCC gives a loaded function: its autoload prefix dropped, 15 bytes."""
    for prefix in (b"kprobe__", b"kretprobe__", b"tracepoint__", b"raw_tracepoint__"):
        if func_name.startswith(prefix):
            func_name = func_name[len(prefix):]
            break
    return func_name[:15]


def prog_load(prog_type: int, name: bytes, linked: tuple[bytes, bytes], license: bytes,
              kern_version: int, attach_type: int = -1) -> tuple[int, int, str]:
    """bpfsys.prog_load of a linked program, with its BTF: (fd, errno, log)."""
    from ..kernel import bpfsys
    btf_fd, err = bpfsys.btf_load(_btf())
    if btf_fd < 0:
        return -1, err, f"loading the BTF of a bpf_loop callback: {os.strerror(err)}\n"
    try:
        insns, records = linked
        return bpfsys.prog_load(prog_type, name, insns, license, kern_version, attach_type,
                                func_info=(btf_fd, records))
    finally:
        os.close(btf_fd)   # the program holds its own reference


def linked_functions(dump: Any, functions: list[bytes], func_name: bytes
                     ) -> tuple[bytes, bytes] | None:
    """`func_name` linked to the callbacks it calls (dump: name -> instructions),
    None if it calls none."""
    names = callback_names(functions)
    if not names or func_name in names:
        return None
    return link(dump(func_name), {name: dump(name) for name in names})


def linking_bpf() -> type:
    """bcc.BPF whose loads link bpf_loop callbacks (BCC's own load otherwise)."""
    import bcc
    from bcc.libbcc import lib

    class LinkingBPF(bcc.BPF):
        def load_func(self, func_name: Any, prog_type: int, device: Any = None,
                      attach_type: int = -1) -> Any:
            func_name = func_name.encode() if isinstance(func_name, str) else func_name
            if func_name in self.funcs:
                return self.funcs[func_name]
            names = [lib.bpf_function_name(self.module, i)
                     for i in range(lib.bpf_num_functions(self.module))]
            linked = linked_functions(self.dump_func, names, func_name)
            # fentry/fexit (TRACING) need the kernel function's BTF id, which only
            # BCC's own load finds: not linked (a Python-frames walk there is refused)
            if linked is None or device is not None or prog_type == _PROG_TYPE_TRACING:
                return super().load_func(func_name, prog_type, device, attach_type)
            fd, err, log = prog_load(prog_type, bcc_prog_name(func_name), linked,
                                     lib.bpf_module_license(self.module),
                                     lib.bpf_module_kern_version(self.module), attach_type)
            if fd < 0:
                if log:   # to fd 2, where libbcc writes it: the loader captures it there
                    os.write(2, log.encode(errors="replace"))
                raise OSError(err, f"Failed to load BPF program {func_name!r}: "
                                   f"{os.strerror(err)}")
            fn = bcc.BPF.Function(self, func_name, fd)
            self.funcs[func_name] = fn
            return fn

    return LinkingBPF
