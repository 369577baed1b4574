"""Python (CPython 3.8-3.13) frames for the stack tools: finding the runtime in
a process (runtime), reading code objects' names and lines from its memory
(code, linetable, memory), the user-space frame walk (walk), merging Python
frames into native stacks (merge), and the user-space half of the BPF walker
in bpf/ptk_python.h (sampling). Design: docs/design/python-frames.md."""
