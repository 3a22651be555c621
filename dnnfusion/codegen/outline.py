"""Parallel loops -> calls into dnnfusion's thread pool (pool.c). Kernel templates mark a loop `PARALLEL` (the
marker line, then `for (int64_t v = 0; v < extent; ++v) {`); here each marked loop of a block's body becomes a
file-scope function over a range of iterations plus a `df_parallel` call, and the locals the loop reads from the
block (declared before it, in the scopes around it) travel in a context struct: pointers and scalars by value,
arrays as pointers to their first element, just as an OpenMP parallel loop would share them. The block's buffer
pointers are recomputed in the outlined function from the block's four arguments. A marker nested in an outlined
loop runs serially inside it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..errors import DnnfusionError
from ..kir.kernel import PARALLEL

POOL_CALL = "df_parallel("   # how an outlined loop is handed to the thread pool (a statement, not the declaration)
KEYWORDS = frozenset({"return", "goto", "else", "case", "break", "continue", "if", "for", "while", "do", "switch",
                      "sizeof", "typedef", "struct", "union", "enum", "default"})
QUALIFIERS = r"(?:(?:static|const|register|volatile)\s+)*"
LOOP = re.compile(r"^for \(int64_t (\w+) = 0; \1 < (.+); \+\+\1\) \{$")
FOR_DECL = re.compile(r"\bfor\s*\(\s*(" + QUALIFIERS + r"(?:unsigned\s+|signed\s+)?[A-Za-z_]\w*)\s+([A-Za-z_]\w*)\s*=")
DECL = re.compile(r"^(" + QUALIFIERS + r")((?:unsigned\s+|signed\s+)?[A-Za-z_]\w*)(\s*[\s*].*)$", re.S)
DECLARATOR = re.compile(r"^\s*((?:\*\s*(?:(?:const|restrict)\s+)*)*)([A-Za-z_]\w*)\s*((?:\[[^\]]*\])*)\s*"
                        r"(?:__attribute__\s*\(\(.*\)\))?\s*(?:=.*)?$", re.S)
INIT_LIST = re.compile(r"=\s*\{[^{}]*\}")
IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
CONTEXT_ARGS = (("char*", "arena"), ("const char*", "weights"), ("const void* const*", "in"),
                ("void* const*", "out"))


@dataclass(frozen=True)
class Local:
    """A local the block declared: how to hold it in a struct field and how to declare it again from one."""

    name: str
    quals: str          # "const " and the like, without "static"
    base: str           # float, int64_t, __m512, ...
    stars: str          # pointer declarator with its qualifiers, e.g. "* restrict "
    dims: str           # array extents, e.g. "[9]"

    def field(self) -> str:
        if self.dims:
            return f"{self.quals}{self.base} (*{self.name}){_rest_dims(self.dims)};"
        return " ".join(filter(None, [f"{self.quals}{self.base}", re.sub(r"restrict", "", self.stars).strip(),
                                      f"{self.name};"]))

    def redeclared(self, source: str) -> str:
        if self.dims:
            return f"{self.quals}{self.base} (*{self.name}){_rest_dims(self.dims)} = {source}->{self.name};"
        return " ".join(filter(None, [f"{self.quals}{self.base}", self.stars.strip(),
                                      f"{self.name} = {source}->{self.name};"]))


def _rest_dims(dims: str) -> str:
    """`[9][4]` -> `[4]`: an array decays to a pointer to its first element."""
    return "".join(re.findall(r"\[[^\]]*\]", dims)[1:])


def declarations(statement: str) -> list[Local]:
    """The locals a C statement declares (none for anything else)."""
    m = DECL.match(statement.strip())
    if not m or m.group(2) in KEYWORDS:
        return []
    quals = re.sub(r"\bstatic\s+", "", m.group(1))
    found = []
    for part in _top_level_split(m.group(3), ","):
        d = DECLARATOR.match(part)
        if not d:
            return []
        found.append(Local(d.group(2), quals, m.group(2), d.group(1), d.group(3)))
    return found


def _top_level_split(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside parentheses and brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


class Scopes:
    """The locals visible at each line of a block body, tracked line by line through its braces."""

    def __init__(self) -> None:
        self.stack: list[dict[str, Local]] = [{}]

    def visible(self) -> dict[str, Local]:
        merged: dict[str, Local] = {}
        for scope in self.stack:
            merged.update(scope)
        return merged

    def feed(self, line: str) -> None:
        text = _code(line)
        while INIT_LIST.search(text):
            text = INIT_LIST.sub("= 0", text)
        pending: list[Local] = []
        for token in re.split(r"([{}])", text):
            if token == "{":
                self.stack.append({local.name: local for local in pending})
                pending = []
            elif token == "}":
                if len(self.stack) > 1:
                    self.stack.pop()
            elif token.strip():
                m = FOR_DECL.search(token)
                if m:
                    pending = declarations(f"{m.group(1)} {m.group(2)} = 0")
                    continue
                for statement in token.split(";"):
                    for local in declarations(statement):
                        self.stack[-1][local.name] = local


def _code(line: str) -> str:
    """A line without its comments and string or character literals."""
    line = re.sub(r"/\*.*?\*/", " ", line)
    line = re.sub(r"//.*$", "", line)
    return re.sub(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'", "0", line)


def _loop_end(lines: list[str], start: int) -> int:
    """The index of the line closing the loop opened at lines[start]."""
    depth = 0
    for k in range(start, len(lines)):
        text = _code(lines[k])
        depth += text.count("{") - text.count("}")
        if depth == 0:
            return k
    raise DnnfusionError("generated code has an unbalanced parallel loop (a dnnfusion bug: please report it)")


def outline(name: str, body: str, buffers: Callable[[set[str]], list[str]]) -> tuple[list[str], str]:
    """(file-scope functions, new body) for a block function `name` whose body is `body`; `buffers(used)` gives
    the declarations of the block's buffer pointers (x_in0, x_a3, ...) named in `used`."""
    lines = body.splitlines()
    out: list[str] = []
    functions: list[str] = []
    scopes = Scopes()
    k = 0
    while k < len(lines):
        if lines[k].strip() != PARALLEL:
            scopes.feed(lines[k])
            out.append(lines[k])
            k += 1
            continue
        indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
        header = LOOP.match(lines[k + 1].strip()) if k + 1 < len(lines) else None
        if header is None:
            raise DnnfusionError(f"block {name}: a parallel marker is not followed by a canonical loop "
                                 "(a dnnfusion bug: please report it)")
        end = _loop_end(lines, k + 1)
        inner = [line for line in lines[k + 2:end] if line.strip() != PARALLEL]
        fn = f"{name}_par{len(functions)}"
        used = set(IDENT.findall("\n".join(_code(line) for line in inner)))
        captured = [local for n, local in scopes.visible().items() if n in used]
        functions.append(_function(fn, header.group(1), inner, captured, buffers(used)))
        values = ", ".join([n for _, n in CONTEXT_ARGS] + [f".{c.name} = {c.name}" for c in captured])
        out += [f"{indent}{{ const struct {fn}_ctx ctx_ = {{{values}}};",
                f"{indent}  {POOL_CALL}{fn}, &ctx_, {header.group(2)}, df_team); }}"]
        k = end + 1
    return functions, "\n".join(out)


def _function(fn: str, var: str, inner: list[str], captured: list[Local], buffers: list[str]) -> str:
    """The struct and the range function of one outlined loop."""
    fields = [f"  {ct} {n};" for ct, n in CONTEXT_ARGS] + [f"  {c.field()}" for c in captured]
    args = [f"  {ct.replace('*', '* restrict', 1) if n != 'in' and n != 'out' else ct} {n} = ctx->{n};"
            for ct, n in CONTEXT_ARGS]
    unused = "  (void)arena; (void)weights; (void)in; (void)out;"
    locals_ = [f"  {c.redeclared('ctx')}" for c in captured]
    return "\n".join([f"struct {fn}_ctx {{", *fields, "};",
                      f"static BLOCK void {fn}(const void* ctx_, int64_t lo_, int64_t hi_) {{",
                      f"  const struct {fn}_ctx* ctx = (const struct {fn}_ctx*)ctx_;", *args,
                      *["  " + b.strip() for b in buffers], *locals_, unused,
                      f"  for (int64_t {var} = lo_; {var} < hi_; ++{var}) {{", *["  " + line for line in inner],
                      "  }", "}", ""])
