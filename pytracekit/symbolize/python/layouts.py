"""Where CPython 3.8..3.13 (x86-64, release builds) keep what a Python stack walk reads.

Pure data, stdlib only: the BPF walker gets them per process through a map
(`PyLayout.as_u16()`; `defines()` for single-version programs) and user space
uses them to read names and line tables from /proc/PID/mem. Design and
evidence: docs/design/python-frames.md.

Every offset is stored next to the gdb expression that yields it from the
interpreter's DWARF (tests/test_pyframes_layouts.py evaluates them against
each installed pyenv build). Layouts depend only on the minor version for
these fields (Debian's stripped 3.11.2 matches 3.11.7's DWARF: see the doc).
Free-threaded ("t") and debug (Py_DEBUG / Py_TRACE_REFS) builds differ and
are not covered.

The walk, per version (offsets named as in `PyLayout`):
  _PyRuntime + runtime_interpreters_head -> PyInterpreterState*  (then interp_next)
  interp + interp_threads_head -> PyThreadState*                   (then tstate_next)
  pick the tstate whose tstate_thread_id == pthread_self() == task->thread.fsbase
  3.8-3.10: tstate + tstate_frame -> PyFrameObject*, chain by frame_previous (f_back)
  3.11-3.12: tstate + tstate_cframe -> _PyCFrame*, + cframe_current_frame -> frame
  3.13:     tstate + tstate_frame (current_frame) -> _PyInterpreterFrame*
  frame + frame_code -> PyCodeObject*; position from frame_lasti (3.8-3.10) or
  frame_instr_ptr - (code + code_adaptive) (3.11+).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# _Py_DebugOffsets (3.13+) sits at offset 0 of _PyRuntime and starts with this.
DEBUG_OFFSETS_COOKIE = b"xdebugpy"
# _PyInterpreterFrame.owner value of the shim frame each _PyEval_EvalFrameDefault
# entry pushes (3.12+): it is not a Python function, skip it; it marks a C-stack
# boundary (enum _frameowner FRAME_OWNED_BY_CSTACK).
FRAME_OWNED_BY_CSTACK = 3
# PyASCIIObject.state bit-field (same positions 3.8..3.13): kind (1, 2 or 4
# bytes per character) in bits 2-4, compact in bit 5, ascii in bit 6.
UNICODE_KIND_SHIFT, UNICODE_KIND_MASK = 2, 0x7
UNICODE_COMPACT_BIT, UNICODE_ASCII_BIT = 5, 6
# Bytes per bytecode unit (_Py_CODEUNIT), 3.6+.
CODEUNIT_SIZE = 2


@dataclass(frozen=True)
class PyLayout:
    """Offsets (bytes) for one CPython minor version; None = no such field there."""

    version: tuple[int, int]
    # _PyRuntimeState -> interpreters -> thread states
    runtime_interpreters_head: int
    interp_next: int
    interp_threads_head: int
    tstate_next: int
    tstate_interp: int
    tstate_thread_id: int            # pthread_self() of the thread (x86-64 glibc: its fs base)
    tstate_native_thread_id: Optional[int]  # gettid(), 3.11+
    # thread state -> innermost frame
    tstate_frame: Optional[int]      # 3.8-3.10 PyFrameObject *frame; 3.13 current_frame
    tstate_cframe: Optional[int]     # 3.11-3.12 _PyCFrame *cframe
    cframe_current_frame: Optional[int]
    # frame (PyFrameObject 3.8-3.10, _PyInterpreterFrame 3.11+)
    frame_previous: int              # f_back / previous
    frame_code: int                  # f_code (3.8-3.12) / f_executable (3.13)
    frame_lasti: Optional[int]       # int; bytes 3.8-3.9, code units 3.10
    frame_lineno: Optional[int]      # int f_lineno: only current while tracing (3.8-3.10)
    frame_instr_ptr: Optional[int]   # prev_instr (3.11-3.12) / instr_ptr (3.13)
    frame_is_entry: Optional[int]    # bool, 3.11 only: last frame of this C-level eval call
    frame_owner: Optional[int]       # char, 3.11+ (enum _frameowner)
    # PyCodeObject
    code_filename: int
    code_name: int
    code_qualname: Optional[int]     # 3.11+
    code_firstlineno: int
    code_linetable: int              # co_lnotab 3.8-3.9, co_linetable 3.10+ (a bytes object)
    code_bytecode: Optional[int]     # co_code bytes object, 3.8-3.10
    code_adaptive: Optional[int]     # inline co_code_adaptive[], 3.11+
    # objects
    object_type: int
    type_name: int                   # PyTypeObject.tp_name (char *)
    bytes_size: int
    bytes_data: int
    unicode_length: int              # characters
    unicode_state: int               # 4-byte bit-field, see UNICODE_* above
    unicode_ascii_data: int          # sizeof(PyASCIIObject): compact ASCII data starts here
    unicode_compact_data: int        # sizeof(PyCompactUnicodeObject): compact non-ASCII data
    unicode_utf8: int                # PyCompactUnicodeObject.utf8 (char *, may be NULL)
    # where each number comes from, as a gdb expression on the DWARF
    origins: dict = field(default_factory=dict, compare=False, repr=False)

    def as_u16(self) -> list[int]:
        """The offsets in FIELDS order, ABSENT for a missing field: the value of a
        per-process layout entry in a BPF map (one tool run can meet several
        versions, so the BPF walker reads offsets at run time, not as -D constants)."""
        return [ABSENT if getattr(self, n) is None else getattr(self, n) for n in FIELDS]

    def defines(self, prefix: str = "PY_") -> dict[str, int]:
        """The present fields as C defines, e.g. {'PY_TSTATE_NEXT': 8}; absent ones are left out."""
        out = {f"{prefix}VERSION_MINOR": self.version[1]}
        for name in self.origins:
            value = getattr(self, name)
            if value is not None:
                out[prefix + name.upper()] = value
        return out


ABSENT = 0xFFFF
FIELDS = tuple(n for n in PyLayout.__dataclass_fields__ if n not in ("version", "origins"))


def _off(ctype: str, member: str) -> str:
    return f"(long)&(({ctype} *)0)->{member}"


def _build(version: tuple[int, int], spec: dict[str, tuple[Optional[int], str]]) -> PyLayout:
    values = {name: value for name, (value, _) in spec.items()}
    origins = {name: where for name, (_, where) in spec.items() if where}
    return PyLayout(version=version, origins=origins, **values)


TS, IS, RT = "PyThreadState", "PyInterpreterState", "_PyRuntimeState"
FO, IF, CO = "PyFrameObject", "struct _PyInterpreterFrame", "PyCodeObject"


def _objects(ascii_size: int, compact_size: int, utf8: int) -> dict[str, tuple[int, str]]:
    return {
        "object_type": (8, _off("PyObject", "ob_type")),
        "type_name": (24, _off("PyTypeObject", "tp_name")),
        "bytes_size": (16, _off("PyBytesObject", "ob_base.ob_size")),
        "bytes_data": (32, _off("PyBytesObject", "ob_sval")),
        "unicode_length": (16, _off("PyASCIIObject", "length")),
        "unicode_state": (32, _off("PyASCIIObject", "state")),
        "unicode_ascii_data": (ascii_size, "sizeof(PyASCIIObject)"),
        "unicode_compact_data": (compact_size, "sizeof(PyCompactUnicodeObject)"),
        "unicode_utf8": (utf8, _off("PyCompactUnicodeObject", "utf8")),
    }


def _pre311(minor: int, frame_back: int, lasti: int, lineno: int,
            linetable_name: str) -> PyLayout:
    spec = {
        "runtime_interpreters_head": (32, _off(RT, "interpreters.head")),
        "interp_next": (0, _off(IS, "next")),
        "interp_threads_head": (8, _off(IS, "tstate_head")),
        "tstate_next": (8, _off(TS, "next")),
        "tstate_interp": (16, _off(TS, "interp")),
        "tstate_thread_id": (176, _off(TS, "thread_id")),
        "tstate_native_thread_id": (None, ""),
        "tstate_frame": (24, _off(TS, "frame")),
        "tstate_cframe": (None, ""),
        "cframe_current_frame": (None, ""),
        "frame_previous": (frame_back, _off(FO, "f_back")),
        "frame_code": (frame_back + 8, _off(FO, "f_code")),
        "frame_lasti": (lasti, _off(FO, "f_lasti")),
        "frame_lineno": (lineno, _off(FO, "f_lineno")),
        "frame_instr_ptr": (None, ""),
        "frame_is_entry": (None, ""),
        "frame_owner": (None, ""),
        "code_filename": (104, _off(CO, "co_filename")),
        "code_name": (112, _off(CO, "co_name")),
        "code_qualname": (None, ""),
        "code_firstlineno": (40, _off(CO, "co_firstlineno")),
        "code_linetable": (120, _off(CO, linetable_name)),
        "code_bytecode": (48, _off(CO, "co_code")),
        "code_adaptive": (None, ""),
    }
    spec.update(_objects(48, 72, utf8=56))
    return _build((3, minor), spec)


def _post311(minor: int, spec: dict[str, tuple[Optional[int], str]]) -> PyLayout:
    common = {
        "interp_next": (0, _off(IS, "next")),
        "tstate_next": (8, _off(TS, "next")),
        "tstate_interp": (16, _off(TS, "interp")),
        "frame_lasti": (None, ""),
        "frame_lineno": (None, ""),
        "code_filename": (112, _off(CO, "co_filename")),
        "code_name": (120, _off(CO, "co_name")),
        "code_qualname": (128, _off(CO, "co_qualname")),
        "code_linetable": (136, _off(CO, "co_linetable")),
        "code_bytecode": (None, ""),
    }
    common.update(spec)
    return _build((3, minor), common)


LAYOUTS: dict[tuple[int, int], PyLayout] = {
    (3, 8): _pre311(8, frame_back=24, lasti=104, lineno=108, linetable_name="co_lnotab"),
    (3, 9): _pre311(9, frame_back=24, lasti=104, lineno=108, linetable_name="co_lnotab"),
    (3, 10): _pre311(10, frame_back=24, lasti=96, lineno=100, linetable_name="co_linetable"),
    (3, 11): _post311(11, {
        "runtime_interpreters_head": (40, _off(RT, "interpreters.head")),
        "interp_threads_head": (16, _off(IS, "threads.head")),
        "tstate_thread_id": (152, _off(TS, "thread_id")),
        "tstate_native_thread_id": (160, _off(TS, "native_thread_id")),
        "tstate_frame": (None, ""),
        "tstate_cframe": (56, _off(TS, "cframe")),
        "cframe_current_frame": (8, _off("_PyCFrame", "current_frame")),
        "frame_previous": (48, _off(IF, "previous")),
        "frame_code": (32, _off(IF, "f_code")),
        "frame_instr_ptr": (56, _off(IF, "prev_instr")),
        "frame_is_entry": (68, _off(IF, "is_entry")),
        "frame_owner": (69, _off(IF, "owner")),
        "code_firstlineno": (72, _off(CO, "co_firstlineno")),
        "code_adaptive": (184, _off(CO, "co_code_adaptive")),
        **_objects(48, 72, utf8=56),
    }),
    (3, 12): _post311(12, {
        "runtime_interpreters_head": (40, _off(RT, "interpreters.head")),
        "interp_threads_head": (72, _off(IS, "threads.head")),
        "tstate_thread_id": (136, _off(TS, "thread_id")),
        "tstate_native_thread_id": (144, _off(TS, "native_thread_id")),
        "tstate_frame": (None, ""),
        "tstate_cframe": (56, _off(TS, "cframe")),
        "cframe_current_frame": (0, _off("_PyCFrame", "current_frame")),
        "frame_previous": (8, _off(IF, "previous")),
        "frame_code": (0, _off(IF, "f_code")),
        "frame_instr_ptr": (56, _off(IF, "prev_instr")),
        "frame_is_entry": (None, ""),
        "frame_owner": (70, _off(IF, "owner")),
        "code_firstlineno": (68, _off(CO, "co_firstlineno")),
        "code_adaptive": (192, _off(CO, "co_code_adaptive")),
        **_objects(40, 56, utf8=48),
    }),
    (3, 13): _post311(13, {
        "runtime_interpreters_head": (632, _off(RT, "interpreters.head")),
        "interp_next": (7264, _off(IS, "next")),
        "interp_threads_head": (7344, _off(IS, "threads.head")),
        "tstate_thread_id": (152, _off(TS, "thread_id")),
        "tstate_native_thread_id": (160, _off(TS, "native_thread_id")),
        "tstate_frame": (72, _off(TS, "current_frame")),
        "tstate_cframe": (None, ""),
        "cframe_current_frame": (None, ""),
        "frame_previous": (8, _off(IF, "previous")),
        "frame_code": (0, _off(IF, "f_executable")),
        "frame_instr_ptr": (56, _off(IF, "instr_ptr")),
        "frame_is_entry": (None, ""),
        "frame_owner": (70, _off(IF, "owner")),
        "code_firstlineno": (68, _off(CO, "co_firstlineno")),
        "code_adaptive": (200, _off(CO, "co_code_adaptive")),
        **_objects(40, 56, utf8=48),
    }),
}

# 3.13's _Py_DebugOffsets fields (section, name) that must agree with LAYOUTS[(3, 13)]:
# a process whose runtime says otherwise is not walked with the table.
DEBUG_OFFSETS_313 = {
    "runtime_interpreters_head": ("runtime_state", "interpreters_head"),
    "interp_next": ("interpreter_state", "next"),
    "interp_threads_head": ("interpreter_state", "threads_head"),
    "tstate_next": ("thread_state", "next"),
    "tstate_interp": ("thread_state", "interp"),
    "tstate_thread_id": ("thread_state", "thread_id"),
    "tstate_native_thread_id": ("thread_state", "native_thread_id"),
    "tstate_frame": ("thread_state", "current_frame"),
    "frame_previous": ("interpreter_frame", "previous"),
    "frame_code": ("interpreter_frame", "executable"),
    "frame_instr_ptr": ("interpreter_frame", "instr_ptr"),
    "frame_owner": ("interpreter_frame", "owner"),
    "code_filename": ("code_object", "filename"),
    "code_name": ("code_object", "name"),
    "code_qualname": ("code_object", "qualname"),
    "code_linetable": ("code_object", "linetable"),
    "code_firstlineno": ("code_object", "firstlineno"),
    "code_adaptive": ("code_object", "co_code_adaptive"),
    "object_type": ("pyobject", "ob_type"),
    "type_name": ("type_object", "tp_name"),
    "bytes_size": ("bytes_object", "ob_size"),
    "bytes_data": ("bytes_object", "ob_sval"),
    "unicode_length": ("unicode_object", "length"),
    "unicode_state": ("unicode_object", "state"),
    "unicode_ascii_data": ("unicode_object", "asciiobject_size"),
}


def layout_for(major: int, minor: int) -> Optional[PyLayout]:
    """The layout for a CPython version, or None when it is not supported."""
    return LAYOUTS.get((major, minor))


def version_from_hex(py_version: int) -> tuple[int, int]:
    """(major, minor) from a PY_VERSION_HEX value (the `Py_Version` symbol, 3.11+,
    and _Py_DebugOffsets.version, 3.13+), e.g. 0x030b02f0 -> (3, 11)."""
    return (py_version >> 24) & 0xFF, (py_version >> 16) & 0xFF
