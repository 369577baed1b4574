"""Python frames into a native user stack (design section 7).

The Python chain is split into groups, one per `_PyEval_EvalFrameDefault`
call (BPF marks each group's outermost frame). Walking the native stack from
the leaf, each eval frame is replaced by the next group. When the native
stack has fewer eval frames than there are groups (a frame-pointer unwinder
in an interpreter built without them stops early, the normal case here until
issue 12's CFI unwinder), the frames root-ward of the last replaced one are
not trustworthy: they are dropped and the remaining groups go to the root.
With no eval frame at all, native frames are kept from the leaf up to the
first unnamed one.
"""
from __future__ import annotations

from ...model import Frame

EVAL_FUNCTION = "_PyEval_EvalFrameDefault"


def groups_of(frames: list[tuple[Frame, bool]]) -> list[list[Frame]]:
    """(frame, ends its eval call) innermost first -> groups, innermost first,
    each group root-first (ready to splice into a root-first stack)."""
    groups: list[list[Frame]] = []
    current: list[Frame] = []
    for frame, boundary in frames:
        current.append(frame)
        if boundary:
            groups.append(current[::-1])
            current = []
    if current:
        groups.append(current[::-1])
    return groups


def is_eval_frame(frame: Frame) -> bool:
    # the symbolizer may add "+0x..." (show_offset) or " [module]" (show_module)
    return frame.name.split("+", 1)[0].split(" ", 1)[0] == EVAL_FUNCTION


def merge(native: list[Frame], python: list[tuple[Frame, bool]],
          root: tuple[Frame, ...] = ()) -> tuple[list[Frame], int]:
    """(root-first user stack with the Python frames in place, native frames
    dropped). `native` is root-first; `python` innermost first; `root` frames
    (a truncation marker) go right above the outermost Python frame."""
    groups = groups_of(python)
    if not groups:
        return list(native), 0
    leafward: list[Frame] = []   # leaf first
    used = cut = 0
    for i in range(len(native) - 1, -1, -1):
        frame = native[i]
        if used < len(groups) and is_eval_frame(frame):
            leafward.extend(reversed(groups[used]))
            used += 1
            cut = len(leafward)
            if used == len(groups):     # every group placed: the rest stays as it is
                return list(native[:i]) + list(root) + leafward[::-1], 0
        else:
            leafward.append(frame)
    if used == 0:                      # no eval frame: keep the leaf up to the first unnamed
        kept = []
        for frame in leafward:
            if frame.unknown:
                break
            kept.append(frame)
        tail, dropped = kept[::-1], len(native) - len(kept)
    else:                              # drop what is root-ward of the last eval frame
        tail, dropped = leafward[:cut][::-1], len(leafward) - cut
    head = [f for group in reversed(groups[used:]) for f in group]
    return list(root) + head + tail, dropped
