"""Run BY the interpreter under test (3.8+; keep the syntax 3.8-compatible).

Walks its own runtime with the offsets given as JSON in argv[1] (ctypes reads
of its own memory, the same reads BPF makes) and prints one JSON object that
tests/test_pyframes_layouts.py compares with what the interpreter itself
reports (threading ids, code objects, f_lasti, names). Works on stripped
interpreters too (Debian's /usr/bin/python3.11): only _PyRuntime is looked up.
"""
import ctypes
import json
import sys
import threading

L = json.loads(sys.argv[1])
api = ctypes.pythonapi
api.PyThreadState_Get.restype = ctypes.c_void_p


def u64(addr):
    return ctypes.c_uint64.from_address(addr).value


def u32(addr):
    return ctypes.c_uint32.from_address(addr).value


def i32(addr):
    return ctypes.c_int32.from_address(addr).value


def u8(addr):
    return ctypes.c_uint8.from_address(addr).value


def read_str(obj):
    """A str object's text: compact ASCII data follows PyASCIIObject, other compact
    strings follow PyCompactUnicodeObject with 1, 2 or 4 bytes per character."""
    state = u32(obj + L["unicode_state"])
    kind, compact, ascii = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
    length = u64(obj + L["unicode_length"])
    if not compact:
        return None
    if ascii:
        return ctypes.string_at(obj + L["unicode_ascii_data"], length).decode("ascii")
    raw = ctypes.string_at(obj + L["unicode_compact_data"], length * kind)
    return raw.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind])


def thread_states():
    runtime = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
    interp = u64(runtime + L["runtime_interpreters_head"])
    while interp:
        ts = u64(interp + L["interp_threads_head"])
        while ts:
            yield interp, ts
            ts = u64(ts + L["tstate_next"])
        interp = u64(interp + L["interp_next"])


def frames(tstate):
    """(code address, byte offset of the current instruction or None, owner) innermost first."""
    if L.get("tstate_cframe") is not None:
        frame = u64(u64(tstate + L["tstate_cframe"]) + L["cframe_current_frame"])
    else:
        frame = u64(tstate + L["tstate_frame"])
    out = []
    while frame and len(out) < 200:
        code = u64(frame + L["frame_code"])
        owner = u8(frame + L["frame_owner"]) if L.get("frame_owner") is not None else 0
        if L.get("frame_lasti") is not None:
            lasti = i32(frame + L["frame_lasti"])
            offset = lasti * 2 if sys.version_info[:2] == (3, 10) else lasti
        else:
            instr = u64(frame + L["frame_instr_ptr"])
            offset = instr - (code + L["code_adaptive"])
        entry = u8(frame + L["frame_is_entry"]) if L.get("frame_is_entry") is not None else None
        out.append({"code": code, "offset": offset, "owner": owner, "entry": entry})
        frame = u64(frame + L["frame_previous"])
    return out


def fünf_函数(depth):
    """Non-ASCII name (latin-1 and UCS-2 characters): exercises the compact, non-ASCII path."""
    if depth:
        return fünf_函数(depth - 1)
    return observe()


def observe():
    mine = api.PyThreadState_Get()
    found = [ts for _, ts in thread_states() if u64(ts + L["tstate_thread_id"]) == threading.get_ident()]
    walked = frames(found[0]) if found else []
    expected = []
    f = sys._getframe()
    while f is not None:
        expected.append({"code": id(f.f_code), "offset": f.f_lasti, "name": f.f_code.co_name,
                         "qualname": getattr(f.f_code, "co_qualname", None),
                         "filename": f.f_code.co_filename, "firstlineno": f.f_code.co_firstlineno})
        f = f.f_back
    names = []
    for fr in walked:
        if fr["owner"] == 3:  # FRAME_OWNED_BY_CSTACK shim (3.12+)
            names.append(None)
            continue
        code = fr["code"]
        names.append({
            "name": read_str(u64(code + L["code_name"])),
            "qualname": read_str(u64(code + L["code_qualname"])) if L.get("code_qualname") is not None else None,
            "filename": read_str(u64(code + L["code_filename"])),
            "firstlineno": i32(code + L["code_firstlineno"]),
        })
    native = None
    if found and L.get("tstate_native_thread_id") is not None:
        native = u64(found[0] + L["tstate_native_thread_id"])
    return {"tstate_api": mine, "tstate_walked": found, "native_thread_id": native,
            "get_native_id": threading.get_native_id(), "walked": walked,
            "names": names, "expected": expected}


def in_thread(result):
    result.append(fünf_函数(2))


if __name__ == "__main__":
    main_result = fünf_函数(2)
    other = []
    t = threading.Thread(target=in_thread, args=(other,))
    t.start()
    t.join()
    print(json.dumps({"main": main_result, "thread": other[0]}))
