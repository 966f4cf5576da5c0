"""The course: eight graded assignments, their grader, and the student and teacher builds.

>>> from refmann import course
>>> print(course.check("content_addressing", globals()))      # in a notebook: grade what it defines
>>> report = course.check("content_addressing", "work.ipynb")   # or a notebook / module on disk

``refmann course list | build | check`` is the same from the shell (``docs/course.md``).
"""

from __future__ import annotations

from pathlib import Path

from .assignments import ASSIGNMENTS, Assignment
from .grader import Report, Result, diagnose, grade
from .notebooks import build, load_namespace, stub_source

__all__ = [
    "ASSIGNMENTS",
    "Assignment",
    "Report",
    "Result",
    "build",
    "check",
    "course_dir",
    "diagnose",
    "load_namespace",
    "stub_source",
]


def course_dir() -> Path:
    """The ``course/`` folder of the refmann checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "course"


def _assignment(name) -> Assignment:
    if not isinstance(name, str) or name not in ASSIGNMENTS:
        raise ValueError(f"assignment: expected one of {list(ASSIGNMENTS)}, got {name!r}")
    return ASSIGNMENTS[name]


def check(assignment: str, work=None) -> Report:
    """Grade ``work`` on ``assignment``: a :class:`Report` (``print`` it for the score table).

    Parameters
    ----------
    assignment : str
        One of :data:`ASSIGNMENTS` (``refmann course list``).
    work : dict, str or Path, optional
        A namespace (a notebook's ``globals()``), or the path of a notebook or module; default the
        assignment's solution notebook in ``course/assignments/``.
    """
    a = _assignment(assignment)
    if work is None:
        work = course_dir() / "assignments" / f"{a.notebook}.ipynb"
    if isinstance(work, dict):
        ns = work
    elif isinstance(work, (str, Path)):
        ns = load_namespace(work)
    else:
        raise TypeError(
            f"work: expected a namespace dict or the path of a notebook or module, got {type(work).__name__}"
        )
    return grade(a.name, list(a.checks), ns)
