"""Reading `struct ptk_stack_key` maps (bpf/pytracekit.h) into a StackProfile."""
from __future__ import annotations

from typing import Any

from .model import Frame, LossReport, Sample, StackProfile
from .symbols import Symbolizer

# Between user and kernel frames when a tool asks for a delimiter (BCC's -d).
DELIMITER = Frame("--", "marker")


def sample_from_key(key: Any, value: int, stack_map: Any, symbolizer: Symbolizer, *,
                    user: bool = True, kernel: bool = True, delimit: bool = False,
                    include_comm: bool = True) -> Sample:
    """One aggregated stack, root first: comm, user frames, [--], kernel frames."""
    comm = key.comm.decode(errors="replace")
    ustack = symbolizer.stack(stack_map, key.user_stack_id, pid=key.pid) if user else []
    kstack = symbolizer.stack(stack_map, key.kernel_stack_id, kernel=True) if kernel else []
    path: list[Frame] = [Frame(comm, "process")] if include_comm else []
    path += reversed(ustack)
    if delimit and ustack and kstack:
        path.append(DELIMITER)
    path += reversed(kstack)
    return Sample(tuple(path), value, pid=key.pid, tid=key.tid, comm=comm)


def read_profile(counts_map: Any, stack_map: Any, symbolizer: Symbolizer, loss: LossReport,
                 **options: Any) -> StackProfile:
    samples = [sample_from_key(k, v.value, stack_map, symbolizer, **options)
               for k, v in counts_map.items()]
    loss.unknown_frames += symbolizer.unknown_frames
    return StackProfile(samples=samples, loss=loss)
