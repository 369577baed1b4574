"""User expressions: parsed, checked and turned into C by pytracekit, never pasted.

Filters (`arg1 > 100 && retval != 0`, `comm == "bash"`), trace format
arguments and argdist expressions are tokenized and parsed into a small AST.
Every identifier is looked up in a `Scope` (arg1..argN, retval on returns,
the probe's declared parameters, tracepoint fields, a few builtins) and every
piece of emitted C comes from tables here, so nothing the user typed reaches
the compiler except numbers and the bytes of string literals (emitted as
integers). A malformed expression raises one-line `SpecError`s such as
`filter: unexpected ')' at column 8: arg1 > )`. The C is emitted by
pytracekit.probes.expr_c.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Union

from ..errors import SpecError
from .ctype import INT_TYPES as _INT_TYPES
from .ctype import S32, S64, STR, U64, WORD, CType, field_type  # noqa: F401 (expr's names)

MAX_REGISTER_ARGS = 6          # x86-64 passes six arguments in registers
MAX_USDT_ARGS = 12
MAX_PRELUDE_STACK = 256        # bytes of locals expressions may use (the BPF stack is 512)
# Parsing and emitting C recurse once per level: 500 nested parentheses were a
# RecursionError (and clang stops at 256 brackets). Real filters need few.
MAX_NESTING = 32               # parentheses, casts and unary operators inside each other
MAX_TOKENS = 512

# ---------------------------------------------------------------------------
# Types


# CType, the integer type names and field_type: in .ctype (imported from here too)

_TYPE_WORDS = {w for name in _INT_TYPES for w in name.split()} | {"const", "volatile", "struct",
                                                                   "void", "enum", "union"}


def parse_type(text: str, what: str = "type") -> CType:
    """A C type as written in a signature or argdist spec, classified.

    Only its class is kept (the text is never emitted): integers by size and
    sign, `char *` as a string, any other pointer as a pointer."""
    words = re.findall(r"[A-Za-z_]\w*|\*|\S", text)
    stars = words.count("*")
    bad = [w for w in words if w != "*" and not re.fullmatch(r"[A-Za-z_]\w*", w)]
    if bad or not words:
        raise SpecError(f"{what}: not a C type: '{text.strip()}' (e.g. int, u64, size_t, char *)")
    core = [w for w in words if w not in ("*", "const", "volatile")]
    base = " ".join(core)
    if stars:
        if stars == 1 and base in ("char", "signed char", "unsigned char"):
            return STR
        if core and (core[0] in ("struct", "union", "enum") or base in _INT_TYPES
                     or base == "void" or len(core) == 1):
            return CType("ptr")
    elif base in _INT_TYPES:
        return _INT_TYPES[base]
    known = "char, short, int, long, unsigned ..., u8..u64, s8..s64, size_t, ssize_t, pid_t, char *"
    raise SpecError(f"{what}: unknown type '{text.strip()}' (known: {known}, or any pointer)")


# ---------------------------------------------------------------------------
# Tokens

@dataclass(frozen=True)
class Token:
    kind: str      # num, str, ident, dollar, op, end
    text: str
    col: int       # 0-based offset into the expression text
    value: object = None


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*)
  | (?P<str>"(?:\\.|[^"\\])*")
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<dollar>\$[A-Za-z_]\w*)
  | (?P<op>->|==|!=|<=|>=|&&|\|\||<<|>>|[<>+\-*/%&|^!~(),\[\]])
""", re.X)

# Characters that only make sense in statements or in C we do not accept.
_FORBIDDEN_CHARS = {
    ";": "unexpected ';' (one expression, not statements)",
    "{": "braces are not allowed (one expression, not statements)",
    "}": "braces are not allowed (one expression, not statements)",
    "?": "the conditional operator ?: is not supported",
    ":": "unexpected ':'",
    "#": "preprocessor directives are not allowed",
    ".": "'.' member access is not supported (tracepoint fields are args->NAME)",
    "'": "character literals are not supported (use a number or \"string\")",
    '"': "unterminated string",
    "=": "assignment '=' is not allowed (use '==' to compare)",
}
_ASSIGNMENT = re.compile(r"(?:<<|>>|[+\-*/%&|^])=")


def _fail(what: str, text: str, col: int, problem: str) -> SpecError:
    return SpecError(f"{what}: {problem} at column {col + 1}: {text}")


def tokenize(text: str, what: str = "expression") -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text.startswith(("++", "--"), pos):
            raise _fail(what, text, pos, f"'{text[pos:pos + 2]}' is not allowed (expressions "
                                         "only, no increments)")
        if _ASSIGNMENT.match(text, pos):
            raise _fail(what, text, pos, "assignment is not allowed (expressions only)")
        m = _TOKEN.match(text, pos)
        if not m:
            problem = _FORBIDDEN_CHARS.get(text[pos], f"unexpected '{text[pos]}'")
            raise _fail(what, text, pos, problem)
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            value: object = None
            if kind == "num":
                digits = m.group().rstrip("uUlL")
                try:
                    value = int(digits, 8) if re.fullmatch(r"0\d+", digits) else int(digits, 0)
                except ValueError:
                    raise _fail(what, text, pos, f"bad number '{m.group()}'") from None
                if value >= 1 << 64:
                    raise _fail(what, text, pos, f"number '{m.group()}' does not fit 64 bits")
            elif kind == "str":
                value = unescape(m.group()[1:-1], what, text, pos)
            tokens.append(Token(kind, m.group(), pos, value))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0",
            "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def unescape(body: str, what: str = "string", text: str = "", col: int = 0) -> str:
    """The value of a C string literal's body (simple escapes only)."""
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise _fail(what, text or body, col + i + 1,
                            "unsupported escape (use \\n \\t \\\\ \\\" \\0)")
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------------
# The AST

@dataclass(frozen=True)
class Num:
    value: int
    type: CType = S64


@dataclass(frozen=True)
class Str:
    value: str
    type: CType = STR


@dataclass(frozen=True)
class Var:
    """A name resolved by the scope: `source` says where its value comes from."""
    name: str
    source: str          # arg, retval, field, builtin, comm, latency, entry
    type: CType
    index: int = 0       # argument number (1-based) for arg/entry
    field: object = None  # tracefs.Field for tracepoint fields
    local: object = None  # lineprobes.Variable for a source-line probe's locals


@dataclass(frozen=True)
class Unary:
    op: str
    operand: "Node"
    type: CType


@dataclass(frozen=True)
class Binary:
    op: str
    left: "Node"
    right: "Node"
    type: CType


@dataclass(frozen=True)
class Cast:
    operand: "Node"
    type: CType


@dataclass(frozen=True)
class StrEq:
    """`expr == "literal"` (or STRCMP("literal", expr)); negate for !=."""
    operand: "Node"
    literal: str
    negate: bool = False
    type: CType = S32


Node = Union[Num, Str, Var, Unary, Binary, Cast, StrEq]


# ---------------------------------------------------------------------------
# Scopes: what names mean at a probe

@dataclass
class Scope:
    """The names an expression may use at one probe.

    kind: "entry" (uprobe/kprobe), "return" (uretprobe/kretprobe),
    "tracepoint" or "usdt". `params` are the declared signature
    (name, type) in order; `fields` a tracepoint's tracefs fields;
    `user_memory`: pointers point into user space (uprobes, USDT, syscalls).
    """

    kind: str
    params: tuple[tuple[str, CType], ...] = ()
    fields: tuple = ()
    user_memory: bool = True
    retval_type: CType = S64
    usdt_args: tuple[CType, ...] | None = None   # a USDT probe's argument types, when known
    # fentry/fexit: the function's parameter count. Arguments are then read
    # from the context array (ctx[i]) and a return value from ctx[ctx_args];
    # None: from registers (kprobes, uprobes).
    ctx_args: int | None = None
    # A source-line probe's parameters and locals in scope (lineprobes.Variable),
    # read by name from registers and the stack.
    locals: tuple = ()

    @classmethod
    def for_probe(cls, probe_kind: str, params: Iterable[tuple[str, CType]] = (),
                  tracepoint: object = None, retval_type: CType = S64,
                  usdt_args: tuple[CType, ...] | None = None,
                  ctx_args: int | None = None) -> "Scope":
        """From a probes.ProbeSpec/ResolvedProbe kind (and a tracefs.Tracepoint)."""
        kind = {"kprobe": "entry", "uprobe": "entry", "kretprobe": "return",
                "uretprobe": "return", "tracepoint": "tracepoint", "usdt": "usdt"}[probe_kind]
        user = probe_kind in ("uprobe", "uretprobe", "usdt")
        fields: tuple = ()
        if tracepoint is not None:
            fields = tuple(tracepoint.fields)  # type: ignore[attr-defined]
            user = tracepoint.category == "syscalls"  # type: ignore[attr-defined]
        return cls(kind, tuple(params), fields, user, retval_type, usdt_args, ctx_args)

    @property
    def max_args(self) -> int:
        if self.kind == "tracepoint":
            return 0
        if self.kind == "usdt":
            return MAX_USDT_ARGS if self.usdt_args is None else len(self.usdt_args)
        return MAX_REGISTER_ARGS if self.ctx_args is None else self.ctx_args

    def names(self) -> str:
        out = [v.name for v in self.locals] + [p for p, _ in self.params]
        if self.max_args:
            out.append(f"arg1..arg{self.max_args}")
        if self.kind == "return":
            out += ["retval", "$latency", "$entry(NAME)"]
        if self.fields:
            out.append("args->" + "/".join(f.name for f in self.fields))
        out += sorted(BUILTINS) + ["comm"]
        return ", ".join(out)

    def param(self, name: str) -> tuple[int, CType] | None:
        for i, (p, t) in enumerate(self.params):
            if p == name:
                return i + 1, t
        return None

    def local(self, name: str):
        return next((v for v in self.locals if v.name == name), None)

    def field(self, name: str):
        for f in self.fields:
            if f.name == name:
                return f
        return None


# Builtins available at every probe: name -> (C expression, type).
BUILTINS = {
    "pid": ("(u32)(bpf_get_current_pid_tgid() >> 32)", CType("int", 4, False)),
    "tid": ("(u32)bpf_get_current_pid_tgid()", CType("int", 4, False)),
    "tgid": ("(u32)(bpf_get_current_pid_tgid() >> 32)", CType("int", 4, False)),
    "uid": ("(u32)bpf_get_current_uid_gid()", CType("int", 4, False)),
    "gid": ("(u32)(bpf_get_current_uid_gid() >> 32)", CType("int", 4, False)),
    "cpu": ("bpf_get_smp_processor_id()", CType("int", 4, False)),
    "nsecs": ("bpf_ktime_get_ns()", U64),
}


# ---------------------------------------------------------------------------
# The parser

_BINARY_LEVELS = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="),
                  ("<", "<=", ">", ">="), ("<<", ">>"), ("+", "-"), ("*", "/", "%")]
_LOGICAL = {"||", "&&", "==", "!=", "<", "<=", ">", ">="}


class Parser:
    def __init__(self, text: str, scope: Scope, what: str = "expression") -> None:
        self.text = text
        self.scope = scope
        self.what = what
        self.tokens = tokenize(text, what)
        self.pos = 0
        self.depth = 0

    def check_length(self) -> None:
        """After parsing (nesting errors say more): the tree is as deep as the
        longest chain of operators, and emitting C recurses along it."""
        if len(self.tokens) > MAX_TOKENS:
            raise self.fail(f"expression too long (more than {MAX_TOKENS} tokens)",
                            self.tokens[MAX_TOKENS])

    # -- helpers -------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def fail(self, problem: str, tok: Token | None = None) -> SpecError:
        return _fail(self.what, self.text, (tok or self.tok).col, problem)

    def unexpected(self, tok: Token | None = None) -> SpecError:
        tok = tok or self.tok
        if tok.kind == "end":
            return self.fail("unexpected end of expression", tok)
        return self.fail(f"unexpected '{tok.text}'", tok)

    def take(self, text: str | None = None, kind: str | None = None) -> Token:
        tok = self.tok
        if (text is not None and tok.text != text) or (kind is not None and tok.kind != kind):
            if text is not None and tok.kind == "end":
                raise self.fail(f"expected '{text}' before the end", tok)
            raise self.unexpected(tok)
        self.pos += 1
        return tok

    def at(self, text: str) -> bool:
        return self.tok.kind in ("op",) and self.tok.text == text

    def nested(self, parse, tok: Token) -> Node:
        """parse() one level deeper, at most MAX_NESTING levels."""
        if self.depth >= MAX_NESTING:
            raise self.fail(f"nested more than {MAX_NESTING} levels deep (simplify the "
                            "expression)", tok)
        self.depth += 1
        try:
            return parse()
        finally:
            self.depth -= 1

    # -- entry points --------------------------------------------------------

    def parse_one(self) -> Node:
        node = self.expression()
        if self.tok.kind != "end":
            raise self.unexpected()
        self.check_length()
        return node

    def parse_list(self) -> list[Node]:
        if self.tok.kind == "end":
            return []
        nodes = [self.expression()]
        while self.at(","):
            self.take(",")
            nodes.append(self.expression())
        if self.tok.kind != "end":
            raise self.unexpected()
        self.check_length()
        return nodes

    # -- grammar -------------------------------------------------------------

    def expression(self, level: int = 0) -> Node:
        if level == len(_BINARY_LEVELS):
            return self.unary()
        left = self.expression(level + 1)
        while self.tok.kind == "op" and self.tok.text in _BINARY_LEVELS[level]:
            op_tok = self.take()
            right = self.expression(level + 1)
            left = self.binary(op_tok, left, right)
        return left

    def binary(self, op_tok: Token, left: Node, right: Node) -> Node:
        op = op_tok.text
        if isinstance(left, Str) or isinstance(right, Str):
            lit, other = (left, right) if isinstance(left, Str) else (right, left)
            if op not in ("==", "!=") or isinstance(other, Str):
                raise self.fail(f"a string can only be compared with == or != to a string, "
                                f"not with '{op}'", op_tok)
            if not other.type.stringish:
                raise self.fail(f"'{op}' compares a string with a number", op_tok)
            return StrEq(other, lit.value, negate=op == "!=")
        for side in (left, right):
            if not side.type.numeric:
                name = side.name if isinstance(side, Var) else "a string"
                raise self.fail(f"'{name}' is a string: compare it with == \"...\" or != \"...\"",
                                op_tok)
        if op in ("/", "%") and isinstance(right, Num) and right.value == 0:
            raise self.fail("division by zero", op_tok)
        if op in _LOGICAL:
            return Binary(op, left, right, S32)
        signed = any(s.type.kind == "int" and s.type.signed for s in (left, right))
        return Binary(op, left, right, S64 if signed else U64)

    def unary(self) -> Node:
        tok = self.tok
        if tok.kind == "op" and tok.text in ("!", "-", "~", "+"):
            self.take()
            operand = self.nested(self.unary, tok)
            if not operand.type.numeric:
                raise self.fail(f"'{tok.text}' needs a number", tok)
            if tok.text == "+":
                return operand
            if isinstance(operand, Num) and tok.text == "-":
                if operand.value > 1 << 63:
                    raise self.fail(f"number '-{operand.value}' does not fit 64 bits (the "
                                    f"smallest is -{1 << 63})", tok)
                return Num(-operand.value)
            return Unary(tok.text, operand, S32 if tok.text == "!" else
                         (S64 if tok.text == "-" else operand.type))
        if self.at("(") and self._cast_follows():
            self.take("(")
            start = self.tok
            words = []
            while not self.at(")"):
                if self.tok.kind == "end":
                    raise self.fail("expected ')' to close the cast")
                words.append(self.take().text)
            self.take(")")
            try:
                ctype = parse_type(" ".join(words), self.what)
            except SpecError as exc:
                raise self.fail(exc.message.split(": ", 1)[1], start) from None
            operand = self.nested(self.unary, start)
            if isinstance(operand, Str):
                raise self.fail("cannot cast a string literal", start)
            return Cast(operand, ctype)
        return self.postfix()

    def _cast_follows(self) -> bool:
        nxt = self.tokens[self.pos + 1]
        return nxt.kind == "ident" and nxt.text in _TYPE_WORDS and not (
            self.scope.param(nxt.text) or self.scope.field(nxt.text))

    def postfix(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.take()
            return Num(int(tok.value))  # type: ignore[arg-type]
        if tok.kind == "str":
            self.take()
            return Str(str(tok.value))
        if tok.kind == "dollar":
            return self.dollar()
        if tok.kind == "ident":
            return self.identifier()
        if self.at("("):
            self.take("(")
            node = self.nested(self.expression, tok)
            self.take(")")
            return node
        raise self.unexpected()

    def dollar(self) -> Node:
        tok = self.take(kind="dollar")
        name = tok.text
        if name in ("$retval", "$latency", "$entry") and self.scope.kind != "return":
            raise self.fail(f"{name} exists only on return probes (r:...)", tok)
        if name == "$retval":
            return Var("$retval", "retval", self.scope.retval_type)
        if name == "$latency":
            return Var("$latency", "latency", U64)
        if name == "$entry":
            self.take("(")
            arg = self.take(kind="ident")
            self.take(")")
            found = self._argument(arg.text)
            if found is None:
                raise self.fail(f"$entry() takes a parameter name or argN, not '{arg.text}'", arg)
            index, ctype = found
            return Var(f"$entry({arg.text})", "entry", ctype, index)
        raise self.fail(f"unknown name '{name}' (known: $retval, $latency, $entry(NAME))", tok)

    def _argument(self, name: str) -> tuple[int, CType] | None:
        found = self.scope.param(name)
        if found:
            return found
        m = re.fullmatch(r"arg(\d+)", name)
        if m and self.scope.max_args:
            index = int(m.group(1))
            if 1 <= index <= self.scope.max_args:
                if self.scope.kind == "usdt" and self.scope.usdt_args is not None:
                    return index, self.scope.usdt_args[index - 1]
                return index, WORD
        return None

    def identifier(self) -> Node:
        tok = self.take(kind="ident")
        name = tok.text
        if name == "STRCMP":
            return self.strcmp(tok)
        if name == "args":
            if not self.at("->"):
                raise self.fail("write args->FIELD for a tracepoint field", tok)
            if self.scope.kind != "tracepoint":
                raise self.fail("args->FIELD exists only on tracepoints (use arg1..argN or "
                                "the parameter names)", tok)
            self.take("->")
            ftok = self.take(kind="ident")
            f = self.scope.field(ftok.text)
            if f is None:
                raise self.fail(f"the tracepoint has no field '{ftok.text}' (fields: "
                                + ", ".join(x.name for x in self.scope.fields) + ")", ftok)
            return Var(f"args->{f.name}", "field", field_type(f), field=f)
        if self.at("->") or self.at("["):
            raise self.fail(f"'{self.tok.text}' is not supported here (only args->FIELD on "
                            "tracepoints)", self.tok)
        if self.at("("):
            raise self.fail(f"function calls are not allowed ('{name}(...)'; only "
                            "STRCMP(\"text\", expr))", tok)
        local = self.scope.local(name)
        if local is not None:
            why = local.problem()
            if why:
                raise SpecError(f"{self.what}: {why}")
            return Var(name, "local", local.ctype, local=local)
        if name == "retval":
            if self.scope.kind != "return":
                raise self.fail("retval exists only on return probes (r:...)", tok)
            return Var(name, "retval", self.scope.retval_type)
        if name == "comm":
            return Var(name, "comm", STR)
        if name in BUILTINS:
            return Var(name, "builtin", BUILTINS[name][1])
        found = self._argument(name)
        if found is not None:
            index, ctype = found
            # Arguments of a return probe are recorded at entry.
            source = "entry" if self.scope.kind == "return" else "arg"
            return Var(name, source, ctype, index)
        if re.fullmatch(r"arg\d+", name):
            if self.scope.kind == "tracepoint":
                raise self.fail(f"tracepoints have no {name}: use args->FIELD (fields: "
                                + ", ".join(x.name for x in self.scope.fields) + ")", tok)
            if self.scope.max_args == 0:
                what = "USDT probe" if self.scope.kind == "usdt" else "function"
                raise self.fail(f"{name}: this {what} has no arguments", tok)
            raise self.fail(f"{name} is out of range (arg1..arg{self.scope.max_args})", tok)
        if self.scope.field(name):
            raise self.fail(f"write args->{name} for the tracepoint field", tok)
        raise self.fail(f"unknown name '{name}' (known: {self.scope.names()})", tok)

    def strcmp(self, tok: Token) -> Node:
        self.take("(")
        lit = self.take(kind="str") if self.tok.kind == "str" else None
        if lit is None:
            raise self.fail('STRCMP takes a "string" first: STRCMP("text", expr)')
        self.take(",")
        operand = self.expression()
        self.take(")")
        if not operand.type.stringish:
            raise self.fail("STRCMP compares a string with a number", tok)
        return StrEq(operand, str(lit.value))


def parse(text: str, scope: Scope, what: str = "expression") -> Node:
    """One expression (a filter, an argdist expression)."""
    if not text.strip():
        raise SpecError(f"{what}: empty expression")
    return Parser(text, scope, what).parse_one()


def parse_filter(text: str, scope: Scope) -> Node:
    node = parse(text, scope, "filter")
    if not node.type.numeric:
        raise SpecError(f"filter: a string is not a condition (compare it: == \"...\") at "
                        f"column 1: {text}")
    return node


def parse_list(text: str, scope: Scope, what: str = "arguments") -> list[Node]:
    return Parser(text, scope, what).parse_list()


def walk(node: Node) -> Iterable[Node]:
    yield node
    for child in ("operand", "left", "right"):
        sub = getattr(node, child, None)
        if sub is not None:
            yield from walk(sub)


def uses_entry(nodes: Iterable[Node]) -> bool:
    """True when a return probe needs values recorded at function entry."""
    return any(isinstance(n, Var) and n.source in ("entry", "latency")
               for root in nodes for n in walk(root))


# ---------------------------------------------------------------------------
# Format strings (trace)

_CONVERSION = re.compile(r"%(?P<flags>[-+ 0#]*)(?P<width>\d+)?(?:\.(?P<prec>\d+))?"
                         r"(?P<length>hh|h|ll|l|z|j|t)?(?P<conv>[diuxXocspKU%])")


@dataclass(frozen=True)
class Conversion:
    start: int
    end: int
    spec: str       # Python %-spec without the length modifier, e.g. "%-10d"
    conv: str       # d i u x X o c s p K U


@dataclass
class Format:
    text: str                  # the format as given (unescaped)
    pieces: list = field(default_factory=list)   # str or Conversion, in order
    args: list = field(default_factory=list)     # Nodes, one per conversion

    @property
    def conversions(self) -> list[Conversion]:
        return [p for p in self.pieces if isinstance(p, Conversion)]


def parse_format(fmt: str, args_text: str, scope: Scope) -> Format:
    """A trace format (already unescaped) and its arguments, checked against
    each other: one argument per conversion, strings for %s, numbers else."""
    pieces: list = []
    pos = 0
    for m in re.finditer(r"%", fmt):
        if m.start() < pos:
            continue
        cm = _CONVERSION.match(fmt, m.start())
        if not cm:
            raise _fail("format", f'"{fmt}"', m.start() + 1,
                        "unknown conversion (use %d %i %u %x %X %o %c %s %p %K %U %%)")
        if cm.start() > pos:
            pieces.append(fmt[pos:cm.start()])
        if cm.group("conv") == "%":
            pieces.append("%")
        else:
            spec = "%" + cm.group("flags") + (cm.group("width") or "") + (
                "." + cm.group("prec") if cm.group("prec") else "")
            pieces.append(Conversion(cm.start(), cm.end(), spec, cm.group("conv")))
        pos = cm.end()
    if pos < len(fmt):
        pieces.append(fmt[pos:])
    out = Format(fmt, pieces, parse_list(args_text, scope, "format arguments"))
    convs = out.conversions
    if len(convs) != len(out.args):
        raise SpecError(f"format: {len(convs)} conversion{'s' if len(convs) != 1 else ''} but "
                        f"{len(out.args)} argument{'s' if len(out.args) != 1 else ''}: "
                        f'"{fmt}"' + (f", {args_text.strip()}" if args_text.strip() else ""))
    for i, (conv, node) in enumerate(zip(convs, out.args)):
        if isinstance(node, Str):
            raise SpecError(f"format: argument {i + 1} is a string literal; put it in the "
                            f'format itself: "{fmt}"')
        if conv.conv == "s" and not node.type.stringish:
            raise SpecError(f"format: %s needs a string but argument {i + 1} is a number: "
                            f'"{fmt}", {args_text.strip()}')
        if conv.conv != "s" and not node.type.numeric:
            raise SpecError(f"format: %{conv.conv} needs a number but argument {i + 1} is a "
                            f'string (use %s): "{fmt}", {args_text.strip()}')
    return out


def format_value(conv: Conversion, value: object, ctype: CType) -> str:
    """One conversion applied in Python to a decoded event value."""
    c = conv.conv
    if c == "s":
        return (conv.spec + "s") % value
    assert isinstance(value, int)
    bits = ctype.size * 8 if ctype.kind == "int" else 64
    unsigned = value & ((1 << bits) - 1)
    signed = unsigned - (1 << bits) if unsigned >> (bits - 1) else unsigned
    if c in "di":
        return (conv.spec + "d") % signed
    if c == "u":
        return (conv.spec + "d") % unsigned
    if c in "xXo":
        return (conv.spec + c) % unsigned
    if c == "c":
        return (conv.spec + "c") % chr(unsigned & 0xff)
    if c == "p":
        return (conv.spec + "s") % hex(unsigned)
    return (conv.spec + "s") % value   # K, U: already symbolized by the caller
