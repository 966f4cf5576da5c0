"""The answer keys: one per tutorial, one section per exercise in order, appended by the teacher's build only.

nbmake executes them (``.ci/run`` step 6); these tests are static."""

import json
import re
from pathlib import Path

import pytest

from refmann import course

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "course"
TUTORIALS = ROOT / "tutorials"


def _cells(path):
    return json.loads(Path(path).read_text())["cells"]


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    student, teacher = tmp_path_factory.mktemp("student"), tmp_path_factory.mktemp("teacher")
    course.build(COURSE, student, tutorials=TUTORIALS)
    course.build(COURSE, teacher, teacher=True, tutorials=TUTORIALS)
    return student, teacher


def test_the_teacher_build_appends_each_key_and_the_student_build_has_none(builds):
    student_build, teacher_build = builds
    keys = sorted((COURSE / "key").glob("*.ipynb"))
    assert keys, "no answer keys in course/key/"
    for key in keys:
        tutorial = _cells(TUTORIALS / key.name)
        teacher = _cells(teacher_build / "tutorials" / key.name)
        student = _cells(student_build / "tutorials" / key.name)
        assert len(student) == len(tutorial)
        assert len(teacher) == len(tutorial) + 1 + len(_cells(key))
        assert not any("Answer key" in _source(c) for c in student)
        assert any(_source(c).startswith("## Exercise 1") for c in teacher)


# -- the answer keys -------------------------------------------------------------------------------------

KEYS = sorted((COURSE / "key").glob("*.ipynb"))


def _exercise_count(tutorial: Path) -> int:
    last = _source(_cells(tutorial)[-1])
    return len(re.findall(r"^\d+\. ", last.split("## Exercises", 1)[1], re.M))


def test_every_tutorial_has_an_answer_key():
    missing = [p.name for p in sorted(TUTORIALS.glob("*.ipynb")) if not (COURSE / "key" / p.name).exists()]
    assert not missing, f"tutorials without an answer key in course/key/: {missing}"


@pytest.mark.parametrize("key", KEYS, ids=[k.stem for k in KEYS])
def test_the_key_answers_every_exercise_in_order(key):
    headings = [
        int(m.group(1)) for c in _cells(key) if c["cell_type"] == "markdown"
        for m in [re.match(r"## Exercise (\d+)\b", _source(c))] if m
    ]  # fmt: skip
    assert headings == list(range(1, _exercise_count(TUTORIALS / key.name) + 1))
    assert 'QUICK = os.environ.get("REFMANN_QUICK") == "1"' in "".join(_source(c) for c in _cells(key))
    for cell in _cells(key):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
