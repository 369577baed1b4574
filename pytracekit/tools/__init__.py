"""One module per tool; each defines `command`, a click command named after it.

The CLI finds tools by listing this package, so adding a tool is adding a
module here (plus bpf/<tool>.bpf.c, tools/<tool>, tests/test_<tool>.py).
"""
