#!/usr/bin/env python3
"""Checks the layer rule of docs/DESIGN.md: nothing below imports anything above.

Every .rs file under crates/batpak/src is a module (src/foo/bar.rs is `foo/bar`). An
import is a `crate::` or `super::` path in non-test code (comments, string literals,
`#[cfg(test)]` modules and items are ignored), resolved to the longest module that
exists; `crate::Name` re-exported by lib.rs counts as an import of the module it comes
from. A module may import its own layer or lower ones. Outside the base layer,
modules of one layer must not import each other in a loop. The table below must name
every module, and every entry must name a file. Exits 1 on any violation.

Usage: scripts/check-layers.py [SRC_DIR] [--table FILE] | --self-test
"""

import argparse
import os
import re
import sys
import tempfile

# Bottom to top. `x/*` is every submodule file under src/x/.
TABLE = """
base:    error id kind coordinate metadata options hash maps sync clock sign registry retention report report/*
format:  format format/*
model:   chain event view kinds lifecycle_records receipt
storage: fault fault/* dir live segment segment/*
engine:  keys index index/* query checkpoint open follow writer writer/*
facade:  cache store graph events
above:   projection gate decide delivery delivery/* redact lifecycle compact repair salvage backup verify builder export catalogue fuzz_api set copy_proof
root:    lib
"""

RAW_STR = re.compile(r'b?r(#*)"')
CHAR = re.compile(r"'(?:\\.[^'\n]{0,8}|[^\\'\n])'")
CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
USE_ITEM = re.compile(r"\s*(?:pub\s*(?:\([^)]*\))?\s*)?use\b")
INLINE_MOD = re.compile(r"\bmod\s+(\w+)\s*\{")
PATH_START = re.compile(r"\b(crate|super)\s*::\s*")
IDENT = re.compile(r"\s*(?:r#)?([A-Za-z_]\w*)(?:\s+as\s+\w+)?")
SEP = re.compile(r"\s*::\s*")
SUPER = re.compile(r"super\s*::\s*")
WS = re.compile(r"\s*")


def wipe(out, a, b):
    for k in range(a, min(b, len(out))):
        if out[k] != "\n":
            out[k] = " "


def blank(s):
    """`s` with comments and string and char literals turned to spaces (lines kept)."""
    out, i, n = list(s), 0, len(s)
    while i < n:
        raw = RAW_STR.match(s, i) if s[i] in "br" else None
        if s.startswith("//", i):
            j = s.find("\n", i)
            j = n if j < 0 else j
        elif s.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                step = s[j : j + 2]
                depth += (step == "/*") - (step == "*/")
                j += 2 if step in ("/*", "*/") else 1
        elif raw and not (i and (s[i - 1].isalnum() or s[i - 1] == "_")):
            end = s.find('"' + raw.group(1), raw.end())
            j = n if end < 0 else end + 1 + len(raw.group(1))
        elif s[i] == '"':
            j = i + 1
            while j < n and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            j += 1
        elif s[i] == "'" and CHAR.match(s, i):
            j = CHAR.match(s, i).end()
        else:
            i += 1
            continue
        wipe(out, i, j)
        i = j
    return "".join(out)


def item_end(code, j, is_use=False):
    """End of the item or bracketed group starting at `j`: its `;` or closing brace."""
    depth = 0
    for k in range(j, len(code)):
        c = code[k]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return k
            if depth == 0 and (c == "]" and code[j] == "[" or c == "}" and not is_use):
                return k + 1
        elif c == ";" and depth == 0:
            return k + 1
    return len(code)


def strip_tests(code):
    """`code` with every `#[cfg(test)]` item (module, fn, impl, use...) blanked."""
    out = list(code)
    for m in CFG_TEST.finditer(code):
        if out[m.start()] == " ":
            continue  # inside an item already blanked
        j = m.end()
        while code[(k := WS.match(code, j).end()) : k + 1] == "#":
            j = item_end(code, code.index("[", k))  # further attributes
        wipe(out, m.start(), item_end(code, j, bool(USE_ITEM.match(code, j))))
    return "".join(out)


def parse_tree(code, i):
    """The paths of a use tree at `i` (`a::b`, `a::{b, c::{d}}`) as segment lists, and its end."""
    i = WS.match(code, i).end()
    if code[i : i + 1] == "*":
        return [[]], i + 1
    if code[i : i + 1] == "{":
        paths, i = [], i + 1
        while True:
            sub, i = parse_tree(code, i)
            paths += [s for s in sub if s]
            i = WS.match(code, i).end()
            if code[i : i + 1] != ",":
                return paths, i + (code[i : i + 1] == "}")
            i += 1
    m = IDENT.match(code, i)
    if not m:
        return [[]], i
    sep = SEP.match(code, m.end())
    if not sep:
        return [[m.group(1)]], m.end()
    subs, end = parse_tree(code, sep.end())
    return [[m.group(1)] + s for s in subs], end


def resolve(segs, modules, reexports):
    """The longest module a crate-relative path names, or None."""
    segs = segs[:-1] if segs and segs[-1] == "self" else segs
    best = None
    for k in range(1, len(segs) + 1):
        name = "/".join(segs[:k])
        if name not in modules or name == "lib":
            break
        best = name
    return best or (reexports.get(segs[0]) if segs else None)


def scan(src):
    """Modules {name: path} and imports {(from, to): first line}."""
    modules = {}
    for root, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                rel = os.path.relpath(os.path.join(root, f), src)
                modules[rel[:-3].replace(os.sep, "/")] = os.path.join(root, f)
    codes = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            codes[name] = strip_tests(blank(f.read()))
    reexports = {}
    for m in re.finditer(r"\bpub\s+use\s+", codes.get("lib", "")):
        for segs in parse_tree(codes["lib"], m.end())[0]:
            if segs and segs[0] not in ("crate", "self", "super"):
                if target := resolve(segs, modules, {}):
                    reexports.setdefault(segs[-1], target)
    edges = {}
    for name, code in codes.items():
        spans = [(m.group(1), m.end() - 1, item_end(code, m.end() - 1)) for m in INLINE_MOD.finditer(code)]
        pos = 0
        while m := PATH_START.search(code, pos):
            scope, j = [], m.end()
            if m.group(1) == "super":
                inner = [n for n, a, b in spans if a < m.start() < b]
                scope, ups = name.split("/") + inner, 1
                while sep := SUPER.match(code, j):
                    ups, j = ups + 1, sep.end()
                if ups <= len(inner):
                    pos = j
                    continue  # still inside this file
                scope = scope[: len(scope) - ups]
            paths, pos = parse_tree(code, j)
            pos = max(pos, j)
            line = code.count("\n", 0, m.start()) + 1
            for segs in paths:
                target = resolve(scope + segs, modules, reexports if not scope else {})
                if target and target != name:
                    edges[(name, target)] = min(edges.get((name, target), line), line)
    return modules, edges


def parse_table(text):
    return [(l.split(":")[0].strip(), l.split(":")[1].split()) for l in text.splitlines() if ":" in l]


def sccs(nodes, succ):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def check(src, table_text=TABLE, show=None):
    """Violations as lines, and the scan: (errors, modules, edges)."""
    modules, edges = scan(src)
    show = show or src
    file = lambda m: os.path.join(show, m + ".rs")
    layers, level, errors = parse_table(table_text), {}, []
    for i, (layer, entries) in enumerate(layers):
        for e in entries:
            hits = [m for m in modules if m.startswith(e[:-1])] if e.endswith("/*") else [e] * (e in modules)
            if not hits:
                errors.append(f"table: {layer} entry {e} names no file under {show}")
            for m in hits:
                if m in level:
                    errors.append(f"table: module {m} is in both {layers[level[m]][0]} and {layer}")
                level[m] = i
    for m in sorted(set(modules) - set(level)):
        errors.append(f"{file(m)}: module {m} is in no layer; add it to the table in scripts/check-layers.py")
    for (a, b), line in sorted(edges.items()):
        if a in level and b in level and level[b] > level[a]:
            la, lb = layers[level[a]][0], layers[level[b]][0]
            errors.append(f"{file(a)}:{line}: {a} ({la}) imports {b} ({lb}), which is above it")
    upper = {m for m in level if level[m] > 0}
    succ = {}
    for a, b in edges:
        if a in upper and b in upper:
            succ.setdefault(a, []).append(b)
    for comp in sccs(upper, succ):
        if len(comp) > 1:
            inside = [f"{a} -> {b} ({file(a)}:{edges[(a, b)]})" for a, b in sorted(edges) if a in comp and b in comp]
            errors.append(f"cycle among {', '.join(comp)}: " + "; ".join(inside))
    return errors, modules, edges


# Synthetic trees: (case, table, files ("@ path" starts one), error substrings, imports there, imports absent)
SELF_TESTS = [
    ("downward import", "low: a\nhigh: b lib", "@ a.rs\npub struct A;\n@ b.rs\nuse crate::a::A;\n@ lib.rs",
     [], [("b", "a")], []),
    ("upward import", "low: a\nhigh: b lib", "@ a.rs\n\n\nfn f() { crate::b::g() }\n@ b.rs\n@ lib.rs",
     ["src/a.rs:3: a (low) imports b (high), which is above it"], [], []),
    ("use group", "low: a b c\nhigh: lib", "@ a.rs\nuse crate::{b::{X, Y as Z}, c};\n@ b.rs\n@ c.rs\n@ lib.rs",
     [], [("a", "b"), ("a", "c")], []),
    ("super", "low: p p/* lib", "@ p.rs\nmod q; mod r;\n@ p/q.rs\nuse super::r::R;\nfn f() { super::g() }\n@ p/r.rs\n@ lib.rs",
     [], [("p/q", "p/r"), ("p/q", "p")], []),
    ("cycle above base", "low: a\nmid: m n\nhigh: lib", "@ a.rs\n@ m.rs\nuse crate::n::N;\n@ n.rs\nuse crate::m::M;\n@ lib.rs",
     ["cycle among m, n: m -> n"], [], []),
    ("cycle in base", "low: a b\nhigh: lib", "@ a.rs\nuse crate::b::B;\n@ b.rs\nuse crate::a::A;\n@ lib.rs",
     [], [("a", "b"), ("b", "a")], []),
    ("comments, literals, tests", "low: a b\nhigh: h lib", """@ a.rs
//! See [`X`](crate::h::X).
/// crate::h::X
const S: &str = "// crate::h::X"; /* crate::h */
const C: char = '"'; fn f<'a>(x: &'a u8) {}
#[cfg(test)]
#[allow(dead_code)]
fn helper() { crate::h::f(); }
#[cfg(test)]
mod tests {
    use crate::h::X;
    fn g() { let s = "}"; }
}
pub fn after() { crate::b::x() }
@ b.rs\n@ h.rs\n@ lib.rs""", [], [("a", "b")], [("a", "h")]),
    ("root re-export", "low: a\nhigh: h lib", "@ a.rs\nfn f(_: crate::Thing) {}\n@ h.rs\n@ lib.rs\npub use h::{Other, Thing};",
     ["a (low) imports h (high)"], [("a", "h")], []),
    ("table is true", "low: a ghost\nhigh: lib", "@ a.rs\n@ stray.rs\n@ lib.rs",
     ["entry ghost names no file", "module stray is in no layer"], [], []),
]


def self_test():
    for case, table, files, want, have, lack in SELF_TESTS:
        with tempfile.TemporaryDirectory() as src:
            for part in files.split("@ ")[1:]:
                rel, _, text = part.partition("\n")
                os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
                with open(os.path.join(src, rel), "w", encoding="utf-8") as f:
                    f.write(text)
            errors, _, edges = check(src, table, show="src")
        ok = all(any(w in e for e in errors) for w in want) and (bool(want) or not errors)
        ok = ok and all(e in edges for e in have) and not any(e in edges for e in lack)
        print(f"self-test {case}: {'ok' if ok else 'FAILED'}")
        if not ok:
            print("  errors:", errors, "\n  imports:", sorted(edges))
            return 1
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", nargs="?", help="the library's src dir (default: crates/batpak/src)")
    parser.add_argument("--table", help="a file holding a layer table in place of the one in this script")
    parser.add_argument("--self-test", action="store_true", help="check this script on small synthetic trees")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    src = args.src or os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "batpak", "src"))
    table = open(args.table, encoding="utf-8").read() if args.table else TABLE
    errors, modules, edges = check(src, table)
    for e in errors:
        print(e)
    if errors:
        print(f"layers: {len(errors)} violations in {len(modules)} modules")
        return 1
    print(f"layers: {len(modules)} modules, {len(edges)} imports, every import points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
