"""PROTOTYPE CHECK (not product code): pyframes_proto.py's line-table decoders
against each interpreter's own answer (co_lines() 3.10+, dis.findlinestarts()
before) for every instruction offset of every code object in threading.py.

    .venv/bin/python docs/design/pyframes_linecheck.py PYTHON [PYTHON ...]
"""
import json
import subprocess
import sys

DUMP = r'''
import dis, json, sys, threading, types
def codes(c):
    yield c
    for k in c.co_consts:
        if isinstance(k, types.CodeType):
            yield from codes(k)
out = []
for c in codes(compile(open(threading.__file__).read(), threading.__file__, "exec")):
    table = c.co_linetable if sys.version_info >= (3, 10) else c.co_lnotab
    exp = {}
    if sys.version_info >= (3, 10):
        for start, end, line in c.co_lines():
            for off in range(start, end, 2):
                exp[off] = line
    else:
        starts = list(dis.findlinestarts(c))
        for off in range(0, len(c.co_code), 2):
            exp[off] = [l for s, l in starts if s <= off][-1] if starts and starts[0][0] <= off else None
    out.append({"first": c.co_firstlineno, "table": table.hex(), "exp": exp})
print(json.dumps({"minor": sys.version_info[1], "codes": out}))
'''

if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import pyframes_proto as p
    for python in sys.argv[1:]:
        data = json.loads(subprocess.run([python, "-c", DUMP], capture_output=True,
                                         text=True, check=True).stdout)
        minor = data["minor"]
        decode = p.line_lnotab if minor < 10 else p.line_310 if minor == 10 else p.line_311
        ok = bad = 0
        for c in data["codes"]:
            table = bytes.fromhex(c["table"])
            for off, line in c["exp"].items():
                if decode(table, c["first"], int(off)) == line:
                    ok += 1
                else:
                    bad += 1
        print(f"{python} (3.{minor}): {ok} offsets agree, {bad} differ")
