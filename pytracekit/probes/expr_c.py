"""C for parsed expressions (pytracekit.probes.expr): every identifier and operator
comes from the tables here or in expr.py; user text contributes only numbers
and the bytes of string literals, emitted as integers."""
from __future__ import annotations

import sys

from ..errors import SpecError
from .expr import (BUILTINS, MAX_PRELUDE_STACK, Binary, Cast, Node, Num, Scope, Str, StrEq,
                   Unary, Var)

_C_OPS = {"||", "&&", "|", "^", "&", "==", "!=", "<", "<=", ">", ">=", "<<", ">>", "+", "-",
          "*", "/", "%", "!", "~"}


class Emitter:
    """C for expressions at one probe.

    `prelude` collects statements the expressions need first (string reads,
    USDT argument reads); `entry_values` the C expressions a return probe's
    entry half must record (read back as `ENTRY->v[i]`)."""

    ENTRY = "__entry"

    def __init__(self, scope: Scope, string_size: int = 80) -> None:
        self.scope = scope
        self.string_size = string_size
        self.prelude: list[str] = []
        self.entry_values: list[str] = []
        self.uses_latency = False
        self.stack_bytes = 0
        self._names = 0
        self._done: dict[str, str] = {}

    def _local(self, stem: str, size: int = 8) -> str:
        """A new local variable of `size` bytes on the 512-byte BPF stack."""
        self.stack_bytes += size
        if self.stack_bytes > MAX_PRELUDE_STACK:
            # Past the BPF stack, LLVM ends the whole process; say it here instead.
            raise SpecError(f"the expressions of one probe need more than {MAX_PRELUDE_STACK} "
                            "bytes of BPF stack (string compares take their length): use "
                            "fewer or shorter string compares")
        self._names += 1
        return f"__{stem}{self._names}"

    def _once(self, key: str, make) -> str:
        if key not in self._done:
            self._done[key] = make()
        return self._done[key]

    # -- argument access -----------------------------------------------------

    def entry_arg(self, index: int) -> str:
        """C for argument `index` at function entry (also used by entry halves)."""
        if self.scope.kind == "usdt":
            # BCC's reader refuses a destination of another size than the argument's.
            types = self.scope.usdt_args
            c_type = types[index - 1].c_name if types else "u64"
            def read() -> str:
                name = self._local("usdt_arg")
                self.prelude.append(f"{c_type} {name} = 0; "
                                    f"bpf_usdt_readarg({index}, ctx, &{name});")
                return name
            return self._once(f"usdt{index}", read)
        return self._register_arg(index)

    def _register_arg(self, index: int) -> str:
        if self.scope.ctx_args is not None:     # fentry/fexit: the context array
            return f"(((u64 *)ctx)[{index - 1}])"
        return f"PT_REGS_PARM{index}(ctx)"

    def _recorded(self, c_at_entry: str) -> str:
        if c_at_entry not in self.entry_values:
            self.entry_values.append(c_at_entry)
        return f"{self.ENTRY}.v[{self.entry_values.index(c_at_entry)}]"

    def _field(self, f) -> str:
        at = f"((char *)ctx + {int(f.offset)})"
        if f.ctype.startswith("__data_loc"):
            return f"((u64)((char *)ctx + (*(u32 *){at} & 0xffff)))"
        if f.array is not None:
            return f"((u64){at})"
        size = f.size if f.size in (1, 2, 4, 8) else 8
        return f"(*(u{size * 8} *){at})"

    def var(self, v: Var) -> str:
        t = v.type.c_name
        if v.source == "arg":
            return f"(({t}){self.entry_arg(v.index)})"
        if v.source == "entry":
            if self.scope.ctx_args is not None:
                # fexit sees the arguments the trampoline saved at entry.
                return f"(({t}){self._register_arg(v.index)})"
            return f"(({t}){self._recorded(self._register_arg(v.index))})"
        if v.source == "retval":
            if self.scope.ctx_args is not None:  # fexit: after the arguments
                return f"(({t})((u64 *)ctx)[{self.scope.ctx_args}])"
            return f"(({t})PT_REGS_RC(ctx))"
        if v.source == "latency":
            self.uses_latency = True
            return f"(bpf_ktime_get_ns() - {self.ENTRY}.ts)"
        if v.source == "field":
            return f"(({t}){self._field(v.field)})"
        if v.source == "builtin":
            return f"(({t}){BUILTINS[v.name][0]})"
        if v.source == "comm":
            return f"((u64){self.comm()})"
        if v.source == "local":
            return self._once(f"local {v.name}", lambda: self._read_local(v.local))
        raise AssertionError(v)

    def _read_local(self, local) -> str:
        """A source-line probe's variable (lineprobes.Variable): its reads go
        to the prelude once, the value is a C expression."""
        prelude, value = local.emit(self._local)
        self.prelude.extend(prelude)
        return value

    def comm(self) -> str:
        def read() -> str:
            name = self._local("comm", 16)
            # Whole words, so that string compares can read it eight bytes at a time.
            self.prelude.append(f"u64 {name}[2] = {{}}; "
                                f"bpf_get_current_comm(&{name}, sizeof({name}));")
            return name
        return self._once("comm", read)

    # -- expressions ---------------------------------------------------------

    def expr(self, node: Node) -> str:
        if isinstance(node, Num):
            if -(1 << 31) <= node.value < (1 << 31):
                return f"({node.value})"
            return f"({node.value & ((1 << 64) - 1)}ULL)"
        if isinstance(node, Var):
            return self.var(node)
        if isinstance(node, Unary):
            assert node.op in _C_OPS
            return f"({node.op}{self.expr(node.operand)})"
        if isinstance(node, Binary):
            assert node.op in _C_OPS
            if node.op in ("/", "%") and node.type.signed:   # see ptk_sdiv in pytracekit.h
                helper = "ptk_sdiv" if node.op == "/" else "ptk_smod"
                return f"{helper}({self.expr(node.left)}, {self.expr(node.right)})"
            return f"({self.expr(node.left)} {node.op} {self.expr(node.right)})"
        if isinstance(node, Cast):
            return f"(({node.type.c_name}){self.expr(node.operand)})"
        if isinstance(node, StrEq):
            return self.str_eq(node)
        if isinstance(node, Str):
            raise SpecError("a string literal cannot stand alone in an expression")
        raise AssertionError(node)

    def memory(self, node: Node) -> str:
        """Where the string an expression points at lives: user or kernel."""
        if isinstance(node, Var) and node.source == "field" and (
                node.field.array is not None or node.field.ctype.startswith("__data_loc")):
            return "kernel"      # inside the tracepoint record
        if isinstance(node, Var) and node.source == "comm":
            return "kernel"      # a local copy
        return "user" if self.scope.user_memory else "kernel"

    def reads_user_string(self, node: Node) -> bool:
        """read_string copies from user memory through ptk_read_user_str (which
        marks a failed read, for stream.user_cstr, and counts it)."""
        return not (isinstance(node, Var) and node.source == "comm") and \
            self.memory(node) == "user"

    def read_string(self, node: Node, dest: str, size: str) -> str:
        """A statement copying the string `node` points at into `dest`."""
        if isinstance(node, Var) and node.source == "comm":
            return f"__builtin_memcpy({dest}, {self.comm()}, TASK_COMM_LEN);"
        if self.reads_user_string(node):
            return f"ptk_read_user_str((char *){dest}, {size}, (void *){self.expr(node)});"
        return f"bpf_probe_read_kernel_str({dest}, {size}, (void *){self.expr(node)});"

    def str_eq(self, node: StrEq) -> str:
        """Compare a string with a literal, eight bytes at a time.

        The string is read into a zeroed buffer of whole words at least two
        bytes longer than the literal: a longer string then differs at the
        literal's length, a shorter one at its NUL. Word compares keep the
        program small (a byte-by-byte chain of branches blows up the verifier)."""
        data = node.literal.encode()
        if isinstance(node.operand, Var) and node.operand.source == "comm":
            if len(data) >= 16:      # comm holds 15 characters and a NUL
                return "(1)" if node.negate else "(0)"
            buf, words = self.comm(), 2
        else:
            if len(data) > self.string_size - 2:
                raise SpecError(f"filter: the string \"{node.literal}\" is longer than the "
                                f"string size ({self.string_size - 2} bytes)")
            words = (len(data) + 2 + 7) // 8
            buf = self._local("str", words * 8)
            self.prelude.append(f"u64 {buf}[{words}] = {{}}; "
                                + self.read_string(node.operand, buf, f"sizeof({buf})"))
        padded = data.ljust(words * 8, b"\0")
        checks = [f"{buf}[{i}] == {int.from_bytes(padded[i * 8:i * 8 + 8], sys.byteorder)}ULL"
                  for i in range(words)]
        test = "(" + " && ".join(checks) + ")"
        return f"(!{test})" if node.negate else test
