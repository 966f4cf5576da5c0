"""Student and teacher builds of the course, and reading a student's work.

A solution notebook marks the graded code with nbgrader's markers::

    def content_weights_backward(dweights, cache):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

The student build replaces each marked region by ``raise NotImplementedError(...)`` at the marker's
indentation and strips every output. The teacher build keeps the solutions and appends to each
tutorial its answer key (``course/key/<tutorial>.ipynb``).

A student's notebook is graded by executing, in order, the top-level imports, ``def`` s, ``class`` es
and ALL-CAPS constant assignments of its code cells — not the cells' other statements (the self-check
call, plots, experiments), so a notebook in any state of work can be graded.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from .._io import atomic_write_text

__all__ = ["BEGIN", "END", "build", "load_namespace", "stub_source", "strip_outputs"]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("your code here")'
_MARK = re.compile(r"^(?P<indent>[ \t]*)### (?P<what>BEGIN|END) SOLUTION[ \t]*$")


def stub_source(source: str, *, where: str = "source") -> str:
    """``source`` with every BEGIN/END SOLUTION region replaced by a stub; unbalanced markers raise ValueError."""
    out, inside, indent = [], False, ""
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        m = _MARK.match(line.rstrip("\n"))
        if m and m["what"] == "BEGIN":
            if inside:
                raise ValueError(f"{where}: line {number}: BEGIN SOLUTION inside another solution region")
            inside, indent = True, m["indent"]
            out.append(f"{indent}# YOUR CODE HERE\n{indent}{STUB}\n")
        elif m:
            if not inside:
                raise ValueError(f"{where}: line {number}: END SOLUTION without a BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: a BEGIN SOLUTION region is never closed")
    return "".join(out)


def _read(path: Path) -> dict:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"path: cannot read {path} as a notebook ({e})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"path: {path} is not a Jupyter notebook (no list of cells)")
    return nb


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def strip_outputs(nb: dict) -> dict:
    """A copy of ``nb`` with every code cell's outputs and execution count cleared."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def _student_notebook(nb: dict, where: str) -> dict:
    nb = strip_outputs(nb)
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") == "code":
            cell["source"] = stub_source(_source(cell), where=f"{where}, cell {i}")
    return nb


def _with_key(tutorial: dict, key: dict) -> dict:
    nb = strip_outputs(tutorial)
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "---\n\n# Answer key (teacher's build)"})
    nb["cells"].extend(strip_outputs(key)["cells"])
    return nb


def _write(path: Path, nb: dict) -> None:
    atomic_write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def build(source: Path, out: Path, *, teacher: bool = False, tutorials: Path | None = None) -> list[Path]:
    """Write the student (or teacher) build of the course under ``out``; returns the files written.

    Parameters
    ----------
    source : Path
        The course folder: ``assignments/*.ipynb`` (solution notebooks) and ``key/*.ipynb`` (answer keys).
    out : Path
        Receives ``assignments/`` and, when ``tutorials`` is given, ``tutorials/``.
    teacher : bool
        Keep the solutions and append each tutorial's answer key; else stubs, and no key.
    tutorials : Path, optional
        The tutorial notebooks to include.
    """
    source, out = Path(source), Path(out)
    notebooks = sorted((source / "assignments").glob("*.ipynb"))
    if not notebooks:
        raise ValueError(f"source: expected solution notebooks in {source / 'assignments'}, found none")
    written = []
    for path in notebooks:
        nb = _read(path)
        nb = strip_outputs(nb) if teacher else _student_notebook(nb, str(path))
        target = out / "assignments" / path.name
        _write(target, nb)
        written.append(target)
    if tutorials is not None:
        for path in sorted(Path(tutorials).glob("*.ipynb")):
            nb, key = _read(path), source / "key" / path.name
            nb = _with_key(nb, _read(key)) if teacher and key.exists() else strip_outputs(nb)
            target = out / "tutorials" / path.name
            _write(target, nb)
            written.append(target)
    return written


def _gradable(source: str, where: str) -> str:
    """The top-level imports, defs, classes and ALL-CAPS assignments of ``source`` (IPython magics dropped)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines), filename=where)
    except SyntaxError as e:
        raise ValueError(f"{where}: line {e.lineno}: syntax error: {e.msg}") from None
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            keep.append(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if all(isinstance(t, ast.Name) and t.id.isupper() for t in targets):
                keep.append(node)
    return ast.unparse(ast.Module(body=keep, type_ignores=[]))


def load_namespace(path) -> dict:
    """The functions of a student's notebook (``.ipynb``) or module (``.py``), executed in a fresh namespace."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: expected a notebook (.ipynb) or a module (.py), found no file at {path}")
    if path.suffix == ".ipynb":
        cells = [(i, _source(c)) for i, c in enumerate(_read(path)["cells"]) if c.get("cell_type") == "code"]
    elif path.suffix == ".py":
        cells = [(0, path.read_text(encoding="utf-8"))]
    else:
        raise ValueError(f"path: expected a .ipynb notebook or a .py module, got {path.name}")
    ns: dict = {"__name__": "student"}
    for i, source in cells:
        where = f"{path.name}, cell {i}" if path.suffix == ".ipynb" else path.name
        code = _gradable(source, where) if path.suffix == ".ipynb" else source
        try:
            compiled = compile(code, f"<{where}>", "exec")
        except SyntaxError as e:
            raise ValueError(f"{where}: line {e.lineno}: syntax error: {e.msg}") from None
        exec(compiled, ns)  # the student's own code, on their own machine
    return ns
