"""The course: every solution gets full marks, every stub of the student build scores 0 on every check,
planted mistakes get the sentence that names them, and the builds keep solutions and keys where they belong."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from refmann import course
from refmann.cli import main
from refmann.course import ASSIGNMENTS, diagnose, load_namespace, stub_source

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "course"
TUTORIALS = ROOT / "tutorials"
assignments = pytest.mark.parametrize("name", list(ASSIGNMENTS))


@pytest.fixture(scope="module")
def student_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    course.build(COURSE, out, tutorials=TUTORIALS)
    return out


@pytest.fixture(scope="module")
def teacher_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    course.build(COURSE, out, teacher=True, tutorials=TUTORIALS)
    return out


def _cells(path):
    return json.loads(Path(path).read_text())["cells"]


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_every_assignment_has_its_solution_notebook():
    stems = sorted(p.stem for p in (COURSE / "assignments").glob("*.ipynb"))
    assert stems == sorted(a.notebook for a in ASSIGNMENTS.values())


def test_the_course_covers_the_topics_of_the_issue():
    """Content addressing, NTM location addressing, the multi-head dense write, LSTM BPTT, the sparse write and
    rollback, the DNC's allocation and links, product keys and the value backward, and a sketch layer."""
    functions = {f for a in ASSIGNMENTS.values() for f in a.functions}
    for needed in (
        "content_weights_backward", "sharpen_backward", "dense_write_backward", "lstm_backward", "rollback_inplace",
        "dnc_allocation_backward", "dnc_links_backward", "product_key_topk_backward", "value_read_backward",
        "sketch_read_backward",
    ):  # fmt: skip
        assert needed in functions


@assignments
def test_the_solution_gets_full_marks(name):
    report = course.check(name)
    assert report.passed, str(report)
    assert len(report.results) >= 4


@assignments
def test_the_student_build_fails_every_check(name, student_build):
    path = student_build / "assignments" / f"{ASSIGNMENTS[name].notebook}.ipynb"
    report = course.check(name, path)
    assert report.score == 0, str(report)
    assert all("NotImplementedError" in r.message for r in report.results), str(report)


@assignments
def test_the_student_build_holds_no_solution_and_no_output(name, student_build):
    solution = _cells(COURSE / "assignments" / f"{ASSIGNMENTS[name].notebook}.ipynb")
    student = _cells(student_build / "assignments" / f"{ASSIGNMENTS[name].notebook}.ipynb")
    assert len(solution) == len(student)
    for cell in student:
        text = _source(cell)
        assert "SOLUTION" not in text
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    # every line between the markers is gone
    for cell in solution:
        for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", _source(cell), re.S):
            for line in region.splitlines():
                if line.strip() and not line.strip().startswith(("#", "return")):
                    assert not any(line in _source(c) for c in student), line


def test_the_solution_notebooks_are_stored_without_outputs():
    for path in (COURSE / "assignments").glob("*.ipynb"):
        for cell in _cells(path):
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


def test_the_teacher_build_keeps_the_solutions(teacher_build):
    for a in ASSIGNMENTS.values():
        assert course.check(a.name, teacher_build / "assignments" / f"{a.notebook}.ipynb").passed


# -- messages that say what is wrong ----------------------------------------------------------------------


def _planted(tmp_path, name, old, new):
    """The solution of ``name`` with one line changed, as a module."""
    nb = COURSE / "assignments" / f"{ASSIGNMENTS[name].notebook}.ipynb"
    code = "\n\n".join(_source(c) for c in _cells(nb) if c["cell_type"] == "code" and "course.check" not in _source(c))
    assert old in code, old
    path = tmp_path / "planted.py"
    path.write_text(code.replace(old, new))
    return course.check(name, path)


def _message(report, check):
    (row,) = [r for r in report.results if r.check == check]
    return row.message


def test_a_missing_strength_is_reported_as_a_factor_of_beta(tmp_path):
    report = _planted(
        tmp_path,
        "content_addressing",
        "cosine_similarity_backward(strengths[..., None] * dz",
        "cosine_similarity_backward(dz",
    )
    assert "dkeys is off by a factor of 1/β" in _message(report, "content_weights: backward")
    assert _message(report, "cosine_similarity: backward") == "ok"


def test_a_softmax_without_its_mean_term_is_named(tmp_path):
    report = _planted(
        tmp_path,
        "content_addressing",
        "dz = weights * (dweights - np.sum(dweights * weights, axis=-1, keepdims=True))",
        "dz = weights * dweights",
    )
    assert "the softmax's VJP lost its −⟨g, w⟩ term" in _message(report, "content_weights: backward")


def test_fancy_index_accumulation_is_named(tmp_path):
    report = _planted(
        tmp_path,
        "sketch_memory",
        "np.add.at(dvalues, rows.reshape(-1), np.repeat(dy / T, T, axis=0))",
        "dvalues[rows.reshape(-1)] += np.repeat(dy / T, T, axis=0)",
    )
    assert "use np.add.at" in _message(report, "sketch_read: backward")


def test_rolling_back_oldest_first_is_named(tmp_path):
    report = _planted(tmp_path, "sparse_write", "for journal in reversed(journals):", "for journal in journals:")
    assert "undo the newest step first" in _message(report, "roll back six steps, bit for bit")
    assert _message(report, "revert one step, bit for bit") == "ok"


def test_bptt_that_keeps_only_the_last_steps_weight_gradient_is_named(tmp_path):
    report = _planted(
        tmp_path,
        "lstm_bptt",
        "dweight, dbias = dweight + dw, dbias + db",
        "dweight, dbias = (dw, db) if not dxs[:-1] else (dweight, dbias)",
    )
    assert "holds only the last step's gradient" in _message(report, "BPTT: backward")


def test_a_crash_in_the_students_code_is_reported_with_its_line(tmp_path):
    report = _planted(tmp_path, "dense_write", "dmemory = dnew * keep", "dmemory = dnew * keep[0, 0, 0, 0]")
    assert "raised IndexError" in _message(report, "one head: backward")


@pytest.mark.parametrize(
    "got, expected",
    [
        (lambda w: w * 2.0, "off by a factor of 2 (two)"),
        (lambda w: -w, "has the wrong sign"),
        (lambda w: np.zeros_like(w), "is all zeros"),
        (lambda w: w[:, :1], "has shape (3, 1), expected (3, 4)"),
        (lambda w: np.where(w > 0, np.nan, w), "NaN or infinite"),
        (lambda w: 0.25 * w, "off by a constant factor of 0.25"),
        (lambda w: w + 1.0, "is wrong in 12 of 12 entries"),
        (lambda w: None, "is None"),
    ],
)
def test_diagnose_says_how_an_array_is_off(got, expected):
    want = np.arange(1.0, 13.0).reshape(3, 4)
    msg = diagnose("dx", got(want), want, factors=[("2 (two)", 2.0)])
    assert msg is not None and expected in msg, msg
    assert diagnose("dx", want + 1e-12, want) is None


def test_diagnose_names_a_swapped_gradient():
    a, b = np.ones((2, 2)), np.full((2, 2), 3.0)
    assert "equals the other: are two outputs swapped?" in diagnose("da", b, a, others=[("the other", b)])


# -- reading and stubbing -------------------------------------------------------------------------------


def test_stub_source_replaces_each_region_at_its_indent():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    out = stub_source(src)
    assert out == 'def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError("your code here")\n'
    ns = {}
    exec(out, ns)
    with pytest.raises(NotImplementedError):
        ns["f"](1)


@pytest.mark.parametrize(
    "src, words",
    [
        ("### END SOLUTION\n", "END SOLUTION without a BEGIN"),
        ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n", "inside another"),
    ],
)
def test_unbalanced_markers_are_refused(src, words):
    with pytest.raises(ValueError, match=words):
        stub_source(src)


def test_grading_a_notebook_runs_only_its_definitions(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "code", "source": "import numpy as np\nLIMIT = 3\n", "metadata": {}},
            {"cell_type": "code", "source": "raise RuntimeError('an experiment')\n", "metadata": {}},
            {
                "cell_type": "code",
                "source": "%matplotlib inline\ndef f():\n    return np.ones(LIMIT)\nf()\n",
                "metadata": {},
            },
        ]
    }
    path = tmp_path / "work.ipynb"
    path.write_text(json.dumps(nb))
    ns = load_namespace(path)
    assert ns["f"]().shape == (3,)


def test_bad_work_is_refused_with_the_argument_named(tmp_path):
    with pytest.raises(ValueError, match="path: expected a notebook"):
        load_namespace(tmp_path / "missing.ipynb")
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="path: cannot read"):
        load_namespace(tmp_path / "bad.ipynb")
    (tmp_path / "bad.py").write_text("def f(:\n")
    with pytest.raises(ValueError, match="syntax error"):
        load_namespace(tmp_path / "bad.py")
    with pytest.raises(ValueError, match="assignment: expected one of"):
        course.check("nope")
    with pytest.raises(TypeError, match="work: expected"):
        course.check("content_addressing", 3)


def test_a_missing_function_is_named(tmp_path):
    (tmp_path / "empty.py").write_text("import numpy as np\n")
    report = course.check("sketch_memory", tmp_path / "empty.py")
    assert report.score == 0
    assert "define `simhash_buckets`" in report.results[0].message


# -- the command line ---------------------------------------------------------------------------------------


def test_cli_list_and_check(capsys, tmp_path, student_build):
    assert main(["course", "list"]) == 0
    assert "content_addressing" in capsys.readouterr().out
    assert main(["course", "check", "sketch_memory"]) == 0
    assert "9 / 9" in capsys.readouterr().out
    stub = student_build / "assignments" / f"{ASSIGNMENTS['sketch_memory'].notebook}.ipynb"
    assert main(["course", "check", "sketch_memory", "--path", str(stub)]) == 1
    assert "0 / 9" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["course", "check"], "assignment: expected one of"),
        (["course", "check", "nope"], "assignment: expected one of"),
        (["course", "check", "sketch_memory", "--path", "/nonexistent/x.ipynb"], "--path: expected a notebook"),
        (["course", "build"], "--out: expected the folder"),
    ],
)
def test_cli_errors_are_one_line_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err


def test_cli_build_writes_both_builds(tmp_path, capsys):
    assert main(["course", "build", "--out", str(tmp_path / "s")]) == 0
    assert main(["course", "build", "--teacher", "--out", str(tmp_path / "t")]) == 0
    assert "student build" in capsys.readouterr().out
    assert len(list((tmp_path / "s" / "assignments").glob("*.ipynb"))) == len(ASSIGNMENTS)
    assert len(list((tmp_path / "t" / "tutorials").glob("*.ipynb"))) == len(list(TUTORIALS.glob("*.ipynb")))


def test_the_docs_table_is_the_course():
    """docs/course.md's table: the names, in order, and the points of each assignment."""
    rows = re.findall(r"^\| (\d) \| `(\w+)` \| [^|]+ \| (\d+) \|", (ROOT / "docs" / "course.md").read_text(), re.M)
    expected = [
        (str(i), a.name, str(int(sum(c.points for c in a.checks)))) for i, a in enumerate(ASSIGNMENTS.values(), 1)
    ]
    assert rows == expected
