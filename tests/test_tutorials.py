"""The tutorial notebooks follow the project's conventions (without executing them).

Executing them is nbmake's job: ``REFMANN_QUICK=1 python -m pytest -q --nbmake tutorials/``. These
tests are static and fast: every ``tutorials/*.ipynb`` is valid nbformat 4, is stored with its outputs
stripped, imports refmann, honours ``REFMANN_QUICK``, and ends with a summary and 3-5 exercises.
"""

import re
from pathlib import Path

import nbformat
import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

#: The notebooks, in reading order (01–08 the teaching issue, 09 the DNC, 10–11 attention and product keys,
#: 12–13 sketch memory and HMA, 14 the LSTM's BPTT).
EXPECTED = (
    "01_content_addressing",
    "02_ntm_heads",
    "03_train_ntm_copy",
    "04_sparse_memory",
    "05_lsh_index",
    "06_rollback_bptt",
    "07_scaling_benchmark",
    "08_check_your_pytorch",
    "09_dnc",
    "10_attention_is_a_memory_read",
    "11_product_keys",
    "12_sketch_memory",
    "13_hma",
    "14_lstm_bptt",
)

notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])


def load(path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    return nb


def markdown(nb):
    return [cell.source for cell in nb.cells if cell.cell_type == "markdown"]


def code(nb):
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


# -- existence ------------------------------------------------------------------------------------------


def test_all_expected_tutorials_exist():
    """NAME-EXISTENCE TEST: fails until every one of the expected notebooks is written.
    The other tests check whichever notebooks exist."""
    missing = [name for name in EXPECTED if not (TUTORIALS / f"{name}.ipynb").exists()]
    assert not missing, f"tutorials missing: {missing}"


def test_every_tutorial_is_one_of_the_expected_names():
    unexpected = [p.stem for p in NOTEBOOKS if p.stem not in EXPECTED]
    assert not unexpected, f"tutorials/ holds notebooks outside the list {EXPECTED}: {unexpected}"


# -- format ---------------------------------------------------------------------------------------------


@notebooks
def test_notebook_is_valid_nbformat_4_with_a_python3_kernel(path):
    nb = load(path)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", nb.metadata.get("kernelspec")
    assert "widgets" not in nb.metadata, "widget state must not be committed"


@notebooks
def test_outputs_are_stripped(path):
    nb = load(path)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"code cells {dirty} carry outputs or an execution count: run nbstripout on {path.name}"


# -- content --------------------------------------------------------------------------------------------


@notebooks
def test_notebook_starts_with_a_title_cell(path):
    nb = load(path)
    assert nb.cells and nb.cells[0].cell_type == "markdown", "the first cell must be the title (markdown)"
    assert nb.cells[0].source.lstrip().startswith("# "), nb.cells[0].source[:80]


@notebooks
def test_notebook_imports_refmann(path):
    """Tutorials teach the library's code; they never carry a private copy of an op."""
    sources = "\n".join(code(load(path)))
    assert re.search(r"^\s*(import refmann\b|from refmann(\.| import))", sources, re.MULTILINE)


@notebooks
def test_notebook_has_a_quick_mode(path):
    sources = "\n".join(code(load(path)))
    assert "REFMANN_QUICK" in sources and re.search(r"^QUICK\s*=", sources, re.MULTILINE), (
        'expected a cell with QUICK = os.environ.get("REFMANN_QUICK") == "1"'
    )


def _heading_cells(nb, heading):
    return [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown" and re.search(rf"^## {heading}\s*$", cell.source, re.MULTILINE)
    ]


@notebooks
def test_notebook_has_summary_and_exercises(path):
    nb = load(path)
    summary, exercises = _heading_cells(nb, "Summary"), _heading_cells(nb, "Exercises")
    assert summary, 'no markdown cell with a "## Summary" heading'
    assert exercises, 'no markdown cell with a "## Exercises" heading'
    assert min(summary) <= max(exercises), "the summary comes before the exercises"


@notebooks
def test_exercises_come_last_and_number_three_to_five(path):
    nb = load(path)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "## Exercises" in last.source, "the notebook ends with the exercises"
    text = last.source.split("## Exercises", 1)[1]
    items = re.findall(r"^(?:\d+\.|[-*]) ", text, re.MULTILINE)
    assert 3 <= len(items) <= 5, f"expected 3-5 exercises (top-level list items), found {len(items)}"


@pytest.mark.parametrize(
    "stem, words", [("03_train_ntm_copy", "learns copy in {}"), ("09_dnc", "trains its DNC on {}")]
)
def test_the_budgets_the_tutorials_page_quotes_are_the_notebooks_full_ones(stem, words):
    """docs/tutorials.md says what the site's (full-size) runs are; the numbers are the notebooks' own."""
    sources = "\n".join(c.source for c in load(TUTORIALS / f"{stem}.ipynb").cells if c.cell_type == "code")
    match = re.search(r"^SEQUENCES\s*=\s*[\d_]+\s+if QUICK else\s+([\d_]+)", sources, re.MULTILINE)
    assert match, f"{stem}: expected SEQUENCES = <quick> if QUICK else <full>"
    full = int(match.group(1).replace("_", ""))
    page = " ".join((TUTORIALS.parent / "docs" / "tutorials.md").read_text().split())
    assert words.format(f"{full:,}") in page
