"""The shape of the code, checked: imports point one way (no cycles; the pure core imports neither Ray nor the
Ray shell), files and functions stay small, no block is written twice, and the README's layout is the tree."""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("serve_app", "deployments")
# Command-line entry points wire the core and the Ray shell together: they alone may import both.
ENTRY_POINTS = ("serve_app.cli", "serve_app.bench", "serve_app.stream.bench")
CODE_DIRS = ("serve_app", "deployments", "scripts", "tests")
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 50
REPEAT_LINES = 10


def code_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py") if ".venv" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, module: str) -> set[str]:
    """Every module `path` imports, at the top or lazily inside a function, relative imports resolved."""
    names = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return names


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in code_files(*PACKAGES)}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target in imported(path, name):
            while target and target not in modules:  # `from a.b import c`: c is a module or a name in a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_imports_neither_ray_nor_the_shell():
    offenders = []
    for path in code_files("serve_app"):
        name = module_name(path)
        if any(name == e or name.startswith(e + ".") for e in ENTRY_POINTS):
            continue
        bad = {m for m in imported(path, name) if m.split(".")[0] in ("ray", "deployments")}
        offenders += [f"{name} imports {m}" for m in sorted(bad)]
    assert offenders == []


def test_files_and_functions_stay_small():
    too_long = []
    for path in code_files(*CODE_DIRS):
        rel = path.relative_to(REPO)
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


def _word(tok: tokenize.TokenInfo) -> str:
    if tok.type == tokenize.NAME:
        return tok.string if keyword.iskeyword(tok.string) else "N"
    if tok.type == tokenize.STRING:
        return "S"
    if tok.type == tokenize.NUMBER:
        return "0"
    return tok.string


SKIPPED = (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)


def shapes(text: str) -> list[tuple[int, str]]:
    """(line number, shape) per code line: names, strings and numbers become placeholders, so two blocks alike
    but for their names and values have the same shapes. Comments, blank lines, imports and lone closing
    brackets are left out."""
    out, statement = [], []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in SKIPPED:
            continue
        if tok.type != tokenize.NEWLINE:
            statement.append(tok)
            continue
        if statement and statement[0].string not in ("import", "from"):
            lines: dict[int, list[str]] = defaultdict(list)
            for t in statement:
                lines[t.start[0]].append(_word(t))
            out += [(n, " ".join(w)) for n, w in sorted(lines.items())
                    if " ".join(w) not in (")", "]", "}", "),", "],", "},")]
        statement = []
    return out


def periodic(window: tuple[str, ...], longest: int = 5) -> bool:
    """A run of like declarations (error classes, table rows: a unit of a few lines over and over) is a table,
    not a copied block."""
    return any(all(window[k] == window[k + p] for k in range(len(window) - p)) for p in range(1, longest + 1))


def repeated_blocks(files: dict[str, str], size: int = REPEAT_LINES) -> list[str]:
    """Runs of `size` or more code lines of the same shape in two places, one row per run."""
    rows = {name: shapes(text) for name, text in files.items()}
    where: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for name, shaped in rows.items():
        for i in range(len(shaped) - size + 1):
            window = tuple(shape for _, shape in shaped[i:i + size])
            if not periodic(window):
                where[window].append((name, i))
    diagonals: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for places in where.values():
        for a in range(len(places)):
            for b in range(a + 1, len(places)):
                (fa, ia), (fb, ib) = places[a], places[b]
                if fa != fb or abs(ia - ib) >= size:  # a block overlapping itself is one block
                    diagonals[(fa, fb, ib - ia)].append(ia)
    found = []
    for (fa, fb, offset), starts in sorted(diagonals.items()):
        starts.sort()
        run_start = prev = starts[0]
        for s in [*starts[1:], None]:
            if s is not None and s == prev + 1:
                prev = s
                continue
            first, last = rows[fa][run_start][0], rows[fa][prev + size - 1][0]
            other_first, other_last = rows[fb][run_start + offset][0], rows[fb][prev + offset + size - 1][0]
            found.append(f"{fa}:{first}-{last} ~ {fb}:{other_first}-{other_last}")
            if s is not None:
                run_start = prev = s
    return found


def test_no_block_is_written_twice():
    files = {str(p.relative_to(REPO)): p.read_text() for p in code_files(*CODE_DIRS)}
    assert repeated_blocks(files) == []


BLOCK = """\
def load(path, limit):
    data = read(path)
    if not data:
        raise ValueError("empty")
    rows = [parse(line) for line in data.splitlines()]
    for row in rows:
        check(row, limit)
    total = sum(r.size for r in rows)
    log.info("loaded %s rows", len(rows))
    cache[path] = rows
    return rows, total
"""


def test_the_repeat_finder_sees_a_block_copied_with_other_names():
    renamed = BLOCK.replace("rows", "items").replace("load", "fetch").replace('"empty"', '"nothing"')
    files = {"a.py": BLOCK, "b.py": "x = 1\n" + renamed, "c.py": BLOCK[:200]}
    assert repeated_blocks(files) == ["a.py:1-11 ~ b.py:2-12"]


def test_the_repeat_finder_leaves_tables_of_like_declarations_alone():
    table = "".join(f"class E{i}(Base):\n    kind = 'e{i}'\n\n" for i in range(20))
    assert repeated_blocks({"a.py": table, "b.py": table.replace("E", "F")}) == []


def readme_layout() -> list[tuple[str, str]]:
    """The README's layout section: (`folder/`, what belongs there), one line per folder."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^([\w.-]+(?:/[\w.-]+)*/)\s+(\S.*)$", section, flags=re.M)


def package_folders() -> set[str]:
    """Every folder holding the project's Python code."""
    return {str(p.parent.relative_to(REPO)) + "/" for root in CODE_DIRS for p in code_files(root)}


def test_readme_layout_names_every_code_folder_once_with_what_it_holds():
    listed = [folder for folder, _ in readme_layout()]
    assert len(listed) == len(set(listed)), "a folder is listed twice"
    assert sorted(package_folders() - set(listed)) == [], "code folders the README's layout does not name"
    assert [f for f in listed if not (REPO / f).is_dir()] == [], "the layout names folders that do not exist"
    assert all(len(what) > 10 for _, what in readme_layout())
