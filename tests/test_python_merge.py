"""The merge of Python frames into native stacks (pure logic, design section 7)."""
from pytracekit.model import Frame
from pytracekit.symbolize.python.merge import merge

U = Frame("[unknown]")
EVAL = Frame("_PyEval_EvalFrameDefault")


def n(*names):
    return [U if x == "?" else EVAL if x == "E" else Frame(x) for x in names]


def py(*spec):
    """'name' or 'name|' (ends an eval call), innermost first."""
    return [(Frame(s.rstrip("|"), "python"), s.endswith("|")) for s in spec]


def names(frames):
    return [f.name for f in frames]


def test_each_eval_frame_gets_its_group_exact_interleave():
    native = n("_start", "main", "E", "PyObject_Call", "E", "deflate")
    stack, dropped = merge(native, py("cb", "inner|", "outer", "<module>|"))
    assert names(stack) == ["_start", "main", "<module>", "outer", "PyObject_Call",
                            "inner", "cb", "deflate"]
    assert dropped == 0


def test_fewer_eval_frames_put_the_rest_at_the_root_and_drop_garbage():
    native = n("?", "?", "E", "PyObject_Free")          # 3.8: one group per frame
    stack, dropped = merge(native, py("inner|", "outer|", "<module>|"))
    assert names(stack) == ["<module>", "outer", "inner", "PyObject_Free"]
    assert dropped == 2


def test_no_eval_frame_keeps_the_named_leaf():
    stack, dropped = merge(n("?", "_PyObject_Free", "?", "PyLong_Add"),
                           py("inner", "outer", "<module>|"))
    assert names(stack) == ["<module>", "outer", "inner", "PyLong_Add"]
    assert dropped == 3


def test_more_eval_frames_than_groups_stay_native():
    stack, _ = merge(n("main", "E", "E", "leaf"), py("f|"))
    assert names(stack) == ["main", "_PyEval_EvalFrameDefault", "f", "leaf"]


def test_truncation_marker_sits_above_the_outermost_python_frame():
    stack, _ = merge(n("?", "E"), py("a", "b|", "c|"), root=(Frame("[+5 python frames]"),))
    assert names(stack) == ["[+5 python frames]", "c", "b", "a"]


def test_no_python_frames_is_the_native_stack():
    native = n("main", "E", "x")
    assert merge(native, []) == (native, 0)
