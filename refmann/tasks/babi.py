r"""bAbI: a loader of the official file format, a small generator of our own that writes it, and the task.

The 20 bAbI tasks (Weston et al. 2015) are short stories of statements followed by questions whose
answers follow from a few of the statements, the *supporting facts*. This module reads and writes
the format of the official release ``tasks_1-20_v1-2`` and generates stories for a subset of the
tasks from a tiny world simulation, so users with the real data and users without it run the same
code. The data are not shipped (they are CC BY 3.0 and live on Facebook's server); pass their path.

**Layout.** ``tasks_1-20_v1-2/`` holds eight families, :data:`FAMILIES`. File names differ:

- ``en``, ``en-10k``, ``hn``, ``hn-10k``, ``shuffled``, ``shuffled-10k``:
  ``qa{N}_{task-name}_{train|test}.txt``, e.g. ``qa1_single-supporting-fact_train.txt``;
- ``en-valid``, ``en-valid-10k``: ``qa{N}_{train|valid|test}.txt``.

**Line format.** Every line is ``ID text``; the ID restarts at 1 with each new story and counts
question lines too. A question line is ``ID question?<TAB>answer<TAB>supporting ids``, the ids
space-separated line ids of earlier statements of the same story. Answers of tasks 8 (lists/sets) and
19 (path finding) are comma-separated lists of words (``apple,football``, ``n,w``).

**In memory.** A story is a tuple of :class:`Statement` and :class:`Question` in file order. A
question's ``supporting`` holds indices into the story's *statements* (questions skipped, 0-based),
so ``statements(story)[i]`` for ``i in q.supporting`` are its supporting facts whatever the line ids
were. The text is kept as written (so ``parse_babi(format_babi(s)) == s``); :func:`tokenize` gives
the tokens: lowercased, split on whitespace, with leading and trailing punctuation (any Unicode
punctuation character, so Hindi's ``।`` too) split off as tokens of their own.

**Generator.** :func:`generate_task` writes stories for the tasks in :data:`GENERATED_TASKS`: 1 (single
supporting fact), 2 (two supporting facts), 3 (three supporting facts), 4 (two-argument relations),
5 (three-argument relations), 6 (yes/no), 8 (lists/sets), 9 (simple negation), 11 (basic
coreference), 12 (conjunction), 13 (compound coreference) and 15 (basic deduction). Tasks 1–3, 5, 6,
8, 9 and 11–13 simulate people moving between places, picking up, dropping and giving objects, and
ask questions of the simulation's state; tasks 4 and 15 draw a few relations and ask what follows
from them. Answers are read from the state; each question's supporting facts
are the statements that fixed that state. It is our own simulation in the spirit of the paper's, not
a port of the original Lua generator, and it does not reproduce the official data's statistics.

**Task.** :class:`BabiTask` (registered as ``"babi"``) turns stories, generated or read, into
sequences one symbol per step in the manner of the DNC paper (Graves et al. 2016, Methods): words
one-hot, ``"."`` after a statement, ``"?"`` after a question, one ``"-"`` per answer word whose
target is that word; :meth:`BabiTask.per_task_errors` scores a split per task as that paper does.

The tasks and their format: Weston, Bordes, Chopra, Rush, van Merriënboer, Joulin & Mikolov (2015),
*Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks*, arXiv:1502.05698.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from refmann._checks import as_float_array, check_positive_int, check_seed
from refmann.tasks._base import Batch, Task, _check_int, _check_rng, error_rate

__all__ = [
    "ANSWER_PROMPT",
    "FAMILIES",
    "GENERATED_TASKS",
    "QUESTION_END",
    "STATEMENT_END",
    "TASK_NAMES",
    "BabiSummary",
    "BabiTask",
    "Example",
    "Question",
    "SplitBatch",
    "Statement",
    "encode_words",
    "find_task_files",
    "format_babi",
    "generate_task",
    "load_babi",
    "parse_babi",
    "statements",
    "summarize_errors",
    "tokenize",
    "write_babi",
    "write_family",
]

#: The names of the 20 tasks, as in the official file names.
TASK_NAMES = {
    1: "single-supporting-fact",
    2: "two-supporting-facts",
    3: "three-supporting-facts",
    4: "two-arg-relations",
    5: "three-arg-relations",
    6: "yes-no-questions",
    7: "counting",
    8: "lists-sets",
    9: "simple-negation",
    10: "indefinite-knowledge",
    11: "basic-coreference",
    12: "conjunction",
    13: "compound-coreference",
    14: "time-reasoning",
    15: "basic-deduction",
    16: "basic-induction",
    17: "positional-reasoning",
    18: "size-reasoning",
    19: "path-finding",
    20: "agents-motivations",
}

#: The eight families of ``tasks_1-20_v1-2``.
FAMILIES = ("en", "en-10k", "en-valid", "en-valid-10k", "hn", "hn-10k", "shuffled", "shuffled-10k")

_VALID_SCHEME = ("en-valid", "en-valid-10k")  # qa{N}_{train|valid|test}.txt


# -- the in-memory form -------------------------------------------------------------------------------
class Statement(NamedTuple):
    """A statement line of a story, e.g. ``Statement("Mary moved to the bathroom.")``."""

    text: str

    @property
    def tokens(self) -> tuple[str, ...]:
        return tokenize(self.text)


class Question(NamedTuple):
    """A question line: its text, its answer words and its supporting facts.

    Attributes
    ----------
    text : str
        The question as written, e.g. ``"Where is Mary?"``.
    answer : tuple of str
        The answer words; a comma-separated answer (tasks 8 and 19) gives several.
    supporting : tuple of int
        Indices into the story's statements (:func:`statements`), 0-based, questions not counted.
    """

    text: str
    answer: tuple[str, ...]
    supporting: tuple[int, ...]

    @property
    def tokens(self) -> tuple[str, ...]:
        return tokenize(self.text)

    @property
    def answer_tokens(self) -> tuple[str, ...]:
        """The answer words lowercased (the tokenisation of :func:`tokenize`)."""
        return tuple(a.lower() for a in self.answer)


Line = Statement | Question


def statements(story: Sequence[Line]) -> tuple[Statement, ...]:
    """The statements of ``story`` in order: what a question's ``supporting`` indices index."""
    return tuple(line for line in story if isinstance(line, Statement))


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def tokenize(text: str) -> tuple[str, ...]:
    """Lowercase, split on whitespace, and split leading/trailing punctuation off into tokens of their own.

    >>> tokenize("Where is Mary? ")
    ('where', 'is', 'mary', '?')
    >>> tokenize("Mary, John and Bill went to the office.")
    ('mary', ',', 'john', 'and', 'bill', 'went', 'to', 'the', 'office', '.')
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    out: list[str] = []
    for chunk in text.lower().split():
        i, j = 0, len(chunk)
        while i < j and _is_punct(chunk[i]):
            i += 1
        while j > i and _is_punct(chunk[j - 1]):
            j -= 1
        out.extend(chunk[:i])
        if i < j:
            out.append(chunk[i:j])
        out.extend(chunk[j:])
    return tuple(out)


# -- parsing ------------------------------------------------------------------------------------------
def _lines_of(text_or_lines) -> list[str]:
    if isinstance(text_or_lines, str):
        return text_or_lines.splitlines()
    if isinstance(text_or_lines, (bytes, os.PathLike)):
        raise TypeError(
            "text_or_lines: expected a str or an iterable of str lines (use load_babi for a path), "
            f"got {type(text_or_lines).__name__}"
        )
    if not isinstance(text_or_lines, Iterable):
        raise TypeError(
            f"text_or_lines: expected a str or an iterable of str lines, got {type(text_or_lines).__name__}"
        )
    lines = list(text_or_lines)
    for k, line in enumerate(lines):
        if not isinstance(line, str):
            raise TypeError(f"text_or_lines: expected str lines, got {type(line).__name__} at line {k + 1}")
    return [line.rstrip("\r\n") for line in lines]


def parse_babi(text_or_lines, *, source: str = "input") -> list[tuple[Line, ...]]:
    """Parse bAbI's line format into a list of stories (tuples of :class:`Statement` and :class:`Question`).

    Parameters
    ----------
    text_or_lines : str or iterable of str
        A file's text, or its lines.
    source : str
        What to call the input in error messages (:func:`load_babi` passes the file name).

    Returns
    -------
    list of tuple
        One tuple per story. Blank lines are skipped.

    Raises
    ------
    ValueError
        For a malformed line, naming the line number and what was expected: a line not of the form
        ``ID text``; an ID that neither restarts the story at 1 nor follows the previous one; a question
        line without an answer, or with a supporting id that is not an earlier statement of its story.
    """
    stories: list[tuple[Line, ...]] = []
    story: list[Line] = []
    ids: dict[int, int] = {}  # line id -> statement index, for the statements of the current story
    prev = 0
    for number, raw in enumerate(_lines_of(text_or_lines), start=1):
        if not raw.strip():
            continue
        where = f"{source}, line {number}"
        head, sep, rest = raw.lstrip().partition(" ")
        if not sep or not head.isdigit() or not head.isascii():
            raise ValueError(f"{where}: expected 'ID text' with a positive integer ID, got {raw!r}")
        line_id = int(head)
        if line_id == 1:
            if story:
                stories.append(tuple(story))
            story, ids = [], {}
        elif line_id != prev + 1:
            raise ValueError(
                f"{where}: expected line id 1 (a new story) or {prev + 1} (the next line of this story), got {line_id}"
            )
        prev = line_id
        fields = rest.split("\t")
        text = fields[0].strip()
        if not text:
            raise ValueError(f"{where}: expected text after the line id, got {raw!r}")
        if len(fields) == 1:
            ids[line_id] = len(ids)
            story.append(Statement(text))
            continue
        if len(fields) > 3:
            raise ValueError(
                f"{where}: expected 'ID question<TAB>answer<TAB>supporting ids' (at most 3 tab-separated fields), "
                f"got {len(fields)} fields"
            )
        answer = tuple(a.strip() for a in fields[1].split(","))
        if not all(answer):
            raise ValueError(f"{where}: expected a non-empty answer (words separated by commas), got {fields[1]!r}")
        support: list[int] = []
        for token in fields[2].split() if len(fields) == 3 else ():
            if not token.isdigit() or not token.isascii():
                raise ValueError(f"{where}: expected supporting ids as space-separated integers, got {fields[2]!r}")
            if int(token) not in ids:
                raise ValueError(
                    f"{where}: expected supporting ids naming earlier statements of this story "
                    f"(ids {sorted(ids) if ids else 'none'}), got {int(token)}"
                )
            support.append(ids[int(token)])
        story.append(Question(text, answer, tuple(support)))
    if story:
        stories.append(tuple(story))
    return stories


# -- writing ------------------------------------------------------------------------------------------
def _check_text(text, what: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what}: expected a str, got {type(text).__name__}")
    if not text.strip() or text != text.strip() or any(c in text for c in "\t\n\r"):
        raise ValueError(f"{what}: expected non-empty text without tabs, newlines or outer spaces, got {text!r}")
    return text


def format_babi(stories: Sequence[Sequence[Line]]) -> str:
    """The text of a bAbI file holding ``stories``: ids restart at 1 per story, questions are
    ``ID question<TAB>answer<TAB>supporting ids``, answers joined by commas. Inverse of :func:`parse_babi`."""
    if isinstance(stories, (str, bytes)) or not isinstance(stories, Sequence):
        raise TypeError(f"stories: expected a sequence of stories, got {type(stories).__name__}")
    out: list[str] = []
    for s, story in enumerate(stories):
        if isinstance(story, (str, bytes)) or not isinstance(story, Sequence) or not story:
            raise TypeError(f"stories[{s}]: expected a non-empty sequence of Statement and Question")
        statement_ids: list[int] = []
        for k, line in enumerate(story):
            line_id = k + 1
            what = f"stories[{s}][{k}]"
            if isinstance(line, Statement):
                out.append(f"{line_id} {_check_text(line.text, what + '.text')}")
                statement_ids.append(line_id)
            elif isinstance(line, Question):
                text = _check_text(line.text, what + ".text")
                answer = tuple(line.answer) if not isinstance(line.answer, str) else (line.answer,)
                for a in answer:
                    if not isinstance(a, str) or not a or a != a.strip() or any(c in a for c in ",\t\n\r"):
                        raise ValueError(f"{what}.answer: expected non-empty words without commas or tabs, got {a!r}")
                if not answer:
                    raise ValueError(f"{what}.answer: expected at least one word, got none")
                ids = []
                for i in line.supporting:
                    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(statement_ids):
                        raise ValueError(
                            f"{what}.supporting: expected indices of earlier statements in [0, {len(statement_ids)}), "
                            f"got {i!r}"
                        )
                    ids.append(str(statement_ids[i]))
                out.append(f"{line_id} {text}\t{','.join(answer)}\t{' '.join(ids)}")
            else:
                raise TypeError(f"{what}: expected a Statement or a Question, got {type(line).__name__}")
    return "".join(line + "\n" for line in out)


def write_babi(stories: Sequence[Sequence[Line]], path) -> Path:
    """Write ``stories`` to ``path`` in the official line format (UTF-8, ``\\n`` line ends); returns the path."""
    text = format_babi(stories)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


# -- finding and loading files --------------------------------------------------------------------------
def _check_task(task) -> int:
    if isinstance(task, bool) or not isinstance(task, (int, np.integer)):
        raise TypeError(f"task: expected an int in 1..20, got {type(task).__name__}")
    if task not in TASK_NAMES:
        raise ValueError(f"task: expected an int in 1..20, got {task}")
    return int(task)


def _check_family(family) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")
    return family


def _splits(family: str) -> tuple[str, ...]:
    return ("train", "valid", "test") if family in _VALID_SCHEME else ("train", "test")


def find_task_files(root, family: str = "en", task: int = 1, split: str = "train") -> Path:
    """The path of one task's file in an unpacked ``tasks_1-20_v1-2`` tree.

    Parameters
    ----------
    root : str or path
        The ``tasks_1-20_v1-2`` folder (which holds the family folders) or a family folder itself.
    family : str
        One of :data:`FAMILIES`.
    task : int
        1..20.
    split : str
        ``"train"`` or ``"test"``; the ``en-valid*`` families also have ``"valid"``.

    Returns
    -------
    Path
        ``qa{task}_{task-name}_{split}.txt``, or ``qa{task}_{split}.txt`` in the ``en-valid*`` families.

    Raises
    ------
    ValueError
        For an unknown family or split, or when the file is absent (the message names where it looked).
    """
    family, task = _check_family(family), _check_task(task)
    if split not in _splits(family):
        raise ValueError(f"split: expected one of {', '.join(_splits(family))} for family {family!r}, got {split!r}")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root: expected a path, got {type(root).__name__}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root: expected a directory (tasks_1-20_v1-2 or a family folder), got {str(root)!r}")
    folder = root / family if (root / family).is_dir() else root
    if family in _VALID_SCHEME:
        pattern = f"qa{task}_{split}.txt"
        matches = [folder / pattern] if (folder / pattern).is_file() else []
    else:
        pattern = f"qa{task}_*_{split}.txt"
        matches = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not matches:
        raise ValueError(
            f"root: no {family} file for task {task}, split {split}: looked for {pattern} in {str(folder)!r} "
            f"(root may be tasks_1-20_v1-2 or the {family} folder)"
        )
    if len(matches) > 1:
        raise ValueError(f"root: expected one file {pattern} in {str(folder)!r}, found {[p.name for p in matches]}")
    return matches[0]


def load_babi(root, task: int, *, family: str = "en", split: str = "train") -> list[tuple[Line, ...]]:
    """The stories of one task file: :func:`find_task_files` then :func:`parse_babi`."""
    path = find_task_files(root, family=family, task=task, split=split)
    return parse_babi(path.read_text(encoding="utf-8"), source=str(path))


# -- the generator --------------------------------------------------------------------------------------
#: The tasks :func:`generate_task` generates.
GENERATED_TASKS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 15)

_PEOPLE = {"Mary": "she", "Sandra": "she", "Julie": "she", "Emma": "she",
           "John": "he", "Daniel": "he", "Fred": "he", "Bill": "he"}  # fmt: skip
_PLACES = ("bathroom", "hallway", "kitchen", "garden", "office", "bedroom")
_OBJECTS = ("apple", "football", "milk", "book", "key", "cup")
_MOVE = ("moved", "went", "journeyed", "travelled", "went back")
_GRAB = ("picked up", "grabbed", "took")
_DROP = ("dropped", "put down", "left")
_THEN = ("Then", "After that", "Afterwards", "Following that")
_GIVE = ("gave", "handed", "passed")
_QUESTIONS_PER_STORY = 5


class _World:
    """The state of one story and, for each fact of it, the statements that fixed it."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.lines: list[Line] = []
        self.n_statements = 0
        self.location: dict[str, tuple[str, tuple[int, ...]]] = {}  # person -> (place, support)
        self.holder: dict[str, tuple[str, int]] = {}  # object -> (person, grab statement)
        self.lying: dict[str, tuple[str, tuple[int, ...]]] = {}  # object -> (place, support), when not held
        self.last_subject: tuple[str, ...] = ()  # who the previous statement was about (for pronouns)
        self.last_named = False  # the previous statement named its subject (so a pronoun may follow)
        self.recent: list[str] = []  # people and objects of the statements since the last question
        self.history: dict[str, list[str]] = {}  # object -> the places it has been in, in order
        self.carried: dict[str, list[tuple[str, tuple[int, ...]]]] = {}  # object -> (place, support) since its grab
        self.gives: list[tuple[str, str, str, int]] = []  # (giver, object, receiver, statement), in order
        self.negated: dict[str, tuple[str, int]] = {}  # person -> (a place they are not in, statement) (task 9)

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def say(self, text: str) -> int:
        self.lines.append(Statement(text))
        self.n_statements += 1
        return self.n_statements - 1

    def ask(self, text: str, answer, support) -> None:
        answer = (answer,) if isinstance(answer, str) else tuple(answer)
        self.lines.append(Question(text, answer, tuple(sorted(set(support)))))
        self.recent = []

    def topic(self, candidates: list[str]) -> str:
        """What to ask about: mostly someone or something of the latest statements, else any candidate."""
        recent = [c for c in candidates if c in self.recent]
        return self.pick(recent if recent and self.rng.random() < 0.75 else candidates)

    # actions
    def move(self, people: tuple[str, ...], *, refer: bool = False, place: str | None = None) -> None:
        here = {self.location[p][0] for p in people if p in self.location}
        if place is None or place in here:
            place = self.pick([p for p in _PLACES if p not in here] if len(here) == 1 else _PLACES)
        verb = self.pick(_MOVE)
        if refer:  # the subject is the previous statement's, named by a pronoun
            antecedent = self.n_statements - 1
            pronoun = "they" if len(people) > 1 else _PEOPLE[people[0]]
            i = self.say(f"{self.pick(_THEN)} {pronoun} {verb} to the {place}.")
            support = (antecedent, i)
        else:
            i = self.say(f"{' and '.join(people)} {verb} to the {place}.")
            support = (i,)
        for p in people:
            self.location[p] = (place, support)
            self.negated.pop(p, None)
        for obj, (person, grab) in self.holder.items():
            if person in people:
                self.history[obj].append(place)
                self.carried[obj].append((place, (*support, grab)))
        self.last_subject, self.last_named = people, not refer
        self.recent.extend(people)

    def grab_or_drop(self) -> bool:
        """One grab or drop that the state allows; False when there is none."""
        options = []
        for obj in _OBJECTS:
            if obj in self.holder:
                options.append(("drop", self.holder[obj][0], obj))
            else:
                for p in self.location:
                    if obj not in self.lying or self.lying[obj][0] == self.location[p][0]:
                        options.append(("grab", p, obj))
        if not options:
            return False
        kind, person, obj = self.pick(options)
        if kind == "grab":
            i = self.say(f"{person} {self.pick(_GRAB)} the {obj}.")
            self.lying.pop(obj, None)
            self.holder[obj] = (person, i)
            place, support = self.location[person]
            if self.history.setdefault(obj, [])[-1:] != [place]:
                self.history[obj].append(place)
            self.carried[obj] = [(place, (*support, i))]
        else:
            i = self.say(f"{person} {self.pick(_DROP)} the {obj}.")
            place, support = self.location[person]
            self.lying[obj] = (place, (*support, i))
            del self.holder[obj]
        self.last_subject, self.last_named = (person,), True
        self.recent.extend((person, obj))
        return True

    def give(self) -> bool:
        """One giving of a held object to someone in the same place (task 5); False when there is none."""
        options = []
        for obj, (giver, _) in self.holder.items():
            place = self.location[giver][0]
            options.extend((giver, obj, p) for p in self.location if p != giver and self.location[p][0] == place)
        if not options:
            return False
        giver, obj, receiver = self.pick(options)
        i = self.say(f"{giver} {self.pick(_GIVE)} the {obj} to {receiver}.")
        self.holder[obj] = (receiver, i)
        self.gives.append((giver, obj, receiver, i))
        self.last_subject, self.last_named = (giver,), True
        self.recent.extend((giver, obj, receiver))
        return True

    def deny(self, person: str) -> None:
        """Task 9: "Mary is no longer in the kitchen." (or "not in"), of where she is or of another place."""
        place = self.location[person][0] if person in self.location and self.rng.random() < 0.7 else None
        place = place or self.pick(_PLACES)
        i = self.say(f"{person} is {self.pick(('not', 'no longer'))} in the {place}.")
        self.location.pop(person, None)
        self.negated[person] = (place, i)
        self.last_subject, self.last_named = (person,), True
        self.recent.append(person)

    def where_object(self, obj: str) -> tuple[str, tuple[int, ...]] | None:
        if obj in self.holder:
            person, grab = self.holder[obj]
            place, support = self.location[person]
            return place, (*support, grab)
        return self.lying.get(obj)

    def before(self) -> list[tuple[str, str, str, tuple[int, ...]]]:
        """(object, place P, where it was before P, support) for every place P it has been in once, carried there.

        The three supporting facts: the grab, the carrier's move to the earlier place, and the move to P.
        """
        out = []
        for obj, carried in self.carried.items():
            for (earlier, s0), (place, s1) in zip(carried[:-1], carried[1:]):
                if self.history[obj].count(place) == 1:
                    out.append((obj, place, earlier, (*s0, *s1)))
        return out


def _story(task: int, rng: np.random.Generator, n_questions: int) -> tuple[Line, ...]:
    w = _World(rng)
    people = tuple(_PEOPLE)
    asked, asked_before = 0, set()
    while asked < n_questions:
        # statements before the next question
        for _ in range(int(rng.integers(1, 3)) if task not in (2, 3) else int(rng.integers(1, 4))):
            r = rng.random()
            if task in (2, 3, 6, 8) and w.location and r < 0.4 and w.grab_or_drop():
                continue
            if task == 9 and r < 0.4:
                w.deny(w.pick(people))
                continue
            if task in (11, 13) and w.last_named and r < 0.5:
                w.move(w.last_subject, refer=True)
            elif task in (12, 13) and r > 0.4:
                a, b = rng.choice(len(people), 2, replace=False)
                w.move((people[a], people[b]))
            elif task == 3 and w.holder and rng.random() < 0.6:  # carry things about
                w.move((w.pick(sorted({person for person, _ in w.holder.values()})),))
            else:
                w.move((w.pick(people),))
        if task == 2:
            known = [o for o in _OBJECTS if w.where_object(o) is not None]
            if not known:
                continue
            obj = w.topic(known)
            place, support = w.where_object(obj)
            w.ask(f"Where is the {obj}?", place, support)
        elif task == 3:
            candidates = [c for c in w.before() if c[:2] not in asked_before]
            if not candidates:
                continue
            recent = [c for c in candidates if c[0] in w.recent]
            obj, place, earlier, support = w.pick(recent if recent and rng.random() < 0.75 else candidates)
            w.ask(f"Where was the {obj} before the {place}?", earlier, support)
            asked_before.add((obj, place))
        elif task == 8:
            carriers = sorted({person for person, _ in w.holder.values()})
            if not carriers:
                continue
            person = w.topic(carriers)
            held = sorted((i, obj) for obj, (p, i) in w.holder.items() if p == person)  # in the order grabbed
            w.ask(f"What is {person} carrying?", [obj for _, obj in held], [i for i, _ in held])
        elif task == 9:
            person = w.topic(sorted(set(w.location) | set(w.negated)))
            if person in w.negated:
                place, i = w.negated[person]
                w.ask(f"Is {person} in the {place}?", "no", (i,))
            else:
                place, support = w.location[person]
                asked_place = place if rng.random() < 0.5 else w.pick([p for p in _PLACES if p != place])
                w.ask(f"Is {person} in the {asked_place}?", "yes" if asked_place == place else "no", support)
        else:
            person = w.topic(list(w.location))
            place, support = w.location[person]
            if task == 6:
                asked_place = place if rng.random() < 0.5 else w.pick([p for p in _PLACES if p != place])
                w.ask(f"Is {person} in the {asked_place}?", "yes" if asked_place == place else "no", support)
            else:
                w.ask(f"Where is {person}?", place, support)
        asked += 1
    return tuple(w.lines)


def _giving_story(rng: np.random.Generator, n_questions: int) -> tuple[Line, ...]:
    """Task 5: four people move, pick things up and give them to each other; questions on the givings.

    Each question is about one giving, the latest that fits what the question names (its supporting fact).
    """
    w = _World(rng)
    people = tuple(str(p) for p in rng.choice(list(_PEOPLE), 4, replace=False))
    asked, since = 0, 0  # since: the first statement after the last question
    while asked < n_questions:
        for _ in range(int(rng.integers(1, 4))):
            r = rng.random()
            if r < 0.45 and w.give():
                continue
            if r < 0.75 and w.location and w.grab_or_drop():
                continue
            person = w.pick(people)
            others = sorted({w.location[p][0] for p in people if p != person and p in w.location})
            w.move((person,), place=w.pick(others) if others and rng.random() < 0.6 else None)
        forms = []  # (question, answer, support, the giving is recent)
        for k, (giver, obj, receiver, i) in enumerate(w.gives):
            later = w.gives[k + 1 :]
            recent = i >= since
            if not any((g, r) == (giver, receiver) for g, _, r, _ in later):
                forms.append((f"What did {giver} give to {receiver}?", obj, i, recent))
            if not any((o, r) == (obj, receiver) for _, o, r, _ in later):
                forms.append((f"Who gave the {obj} to {receiver}?", giver, i, recent))
            if not any(o == obj for _, o, _, _ in later):
                forms.append((f"Who received the {obj}?", receiver, i, recent))
                forms.append((f"Who gave the {obj}?", giver, i, recent))
            if not any((g, o) == (giver, obj) for g, o, _, _ in later):
                forms.append((f"Who did {giver} give the {obj} to?", receiver, i, recent))
        if not forms:
            continue
        recent = [f for f in forms if f[3]]
        text, answer, i, _ = w.pick(recent if recent and rng.random() < 0.75 else forms)
        w.ask(text, answer, (i,))
        asked, since = asked + 1, w.n_statements
    return tuple(w.lines)


_DIRECTIONS = ("north", "south", "east", "west")
_SPECIES = {"mouse": "Mice", "cat": "Cats", "wolf": "Wolves", "sheep": "Sheep"}  # singular -> plural
_NAMES = ("Gertrude", "Winona", "Jessica", "Emily", "Lily", "Bernhard", "Brian", "Julius")


def _relations_story(rng: np.random.Generator) -> tuple[Line, ...]:
    """Task 4: two places related to a third, one question read off one relation, either way round."""
    centre, a, b = rng.choice(_PLACES, 3, replace=False)
    d1, d2 = rng.choice(_DIRECTIONS, 2, replace=False)
    lines = [Statement(f"The {a} is {d1} of the {centre}."), Statement(f"The {b} is {d2} of the {centre}.")]
    k = int(rng.integers(2))
    place, direction = (a, d1) if k == 0 else (b, d2)
    if rng.random() < 0.5:
        lines.append(Question(f"What is {direction} of the {centre}?", (str(place),), (k,)))
    else:
        lines.append(Question(f"What is the {place} {direction} of?", (str(centre),), (k,)))
    return tuple(lines)


def _deduction_story(rng: np.random.Generator, n_questions: int) -> tuple[Line, ...]:
    """Task 15: what each species fears, who belongs to which species, and what someone fears."""
    species = list(_SPECIES)
    lines: list[Line] = []
    fears = {}
    for k in rng.permutation(len(species)):
        s = species[k]
        fears[s] = (species[int(rng.choice([j for j in range(len(species)) if j != k]))], len(lines))
        lines.append(Statement(f"{_SPECIES[s]} are afraid of {_SPECIES[fears[s][0]].lower()}."))
    names = rng.choice(_NAMES, n_questions, replace=False)
    members = {}
    for name in names:
        members[str(name)] = (species[int(rng.integers(len(species)))], len(lines))
        lines.append(Statement(f"{name} is a {members[str(name)][0]}."))
    for name in rng.permutation(names):
        kind, i = members[str(name)]
        feared, j = fears[kind]
        lines.append(Question(f"What is {name} afraid of?", (feared,), tuple(sorted((i, j)))))
    return tuple(lines)


def generate_task(task: int, *, num_questions: int, seed: int) -> list[tuple[Line, ...]]:
    """Stories of one bAbI task from our world simulation, deterministic given ``seed``.

    Parameters
    ----------
    task : int
        One of :data:`GENERATED_TASKS`: 1 "Where is Mary?" after moves; 2 "Where is the apple?" after
        moves, grabs and drops (two supporting facts: the grab or drop and the holder's last move);
        3 "Where was the apple before the kitchen?" (three: the grab and the carrier's two moves);
        4 "The office is north of the kitchen." then "What is north of the kitchen?" or "What is the
        office north of?" (one story per question);
        6 "Is Mary in the office?" (yes/no); 11 moves whose subject may be a pronoun for the previous
        statement's ("Then she went to the garden."; supporting facts: that statement and its antecedent);
        12 "Mary and John went to the kitchen."; 13 both, with "they"; 15 "Cats are afraid of wolves.
        Emily is a cat. What is Emily afraid of?" (two: the membership and the rule);
        5 "Fred gave the football to Bill." (or handed, passed) among moves, grabs and drops, then
        "What did Fred give to Bill?", "Who gave the football to Bill?", "Who received the football?",
        "Who gave the football?" or "Who did Fred give the football to?", each about the latest giving
        that fits what it names (one supporting fact: that giving; four people per story);
        8 "What is Mary carrying?" asked only of someone carrying something, answered with the objects
        in the order picked up, ``apple,football`` (supporting facts: those grabs; never "nothing");
        9 "Mary is no longer in the kitchen." or "Mary is not in the kitchen." among moves, then "Is
        Mary in the kitchen?": "no" for the place denied by her latest statement (its one supporting
        fact), yes/no as in task 6 after a move (never task 10's "maybe").
    num_questions : int
        Questions in all; stories hold 5 each (task 4: 1, task 15: 4; the last may hold fewer).
    seed : int
        Non-negative; the same seed gives the same stories.

    Returns
    -------
    list of tuple
        Stories as :func:`parse_babi` returns them.
    """
    task = _check_task(task)
    if task not in GENERATED_TASKS:
        raise ValueError(f"task: expected one of the generated tasks {GENERATED_TASKS}, got {task}")
    num_questions = check_positive_int(num_questions, "num_questions")
    seed = check_seed(seed)
    rng = np.random.default_rng([seed, task])
    stories = []
    left = num_questions
    while left:
        n = min(left, 1 if task == 4 else 4 if task == 15 else _QUESTIONS_PER_STORY)
        if task == 4:
            stories.append(_relations_story(rng))
        elif task == 15:
            stories.append(_deduction_story(rng, n))
        elif task == 5:
            stories.append(_giving_story(rng, n))
        else:
            stories.append(_story(task, rng, n))
        left -= n
    return stories


def write_family(root, tasks: Iterable[int], *, num_questions: int, seed: int, family: str = "en") -> dict:
    """Write generated tasks as a family folder ``root/family`` of the official release.

    ``family`` ``"en"`` or ``"en-10k"`` writes ``qa{N}_{task-name}_{train|test}.txt``; ``"en-valid"`` or
    ``"en-valid-10k"`` writes ``qa{N}_{train|valid|test}.txt``. Each file holds ``num_questions``
    questions; the splits come from different seeds derived from ``seed``. Returns
    ``{(task, split): path}``.
    """
    if family not in ("en", "en-10k", *_VALID_SCHEME):
        raise ValueError(f"family: expected one of en, en-10k, en-valid, en-valid-10k (English), got {family!r}")
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Iterable):
        raise TypeError(f"tasks: expected an iterable of task numbers, got {type(tasks).__name__}")
    tasks = [_check_task(t) for t in tasks]
    if not tasks:
        raise ValueError("tasks: expected at least one task, got none")
    for t in tasks:
        if t not in GENERATED_TASKS:
            raise ValueError(f"tasks: expected generated tasks {GENERATED_TASKS}, got {t}")
    seed = check_seed(seed)
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root: expected a path, got {type(root).__name__}")
    folder = Path(root) / family
    paths = {}
    for t in tasks:
        for k, split in enumerate(_splits(family)):
            stories = generate_task(t, num_questions=num_questions, seed=seed * 3 + k)
            name = f"qa{t}_{split}.txt" if family in _VALID_SCHEME else f"qa{t}_{TASK_NAMES[t]}_{split}.txt"
            paths[(t, split)] = write_babi(stories, folder / name)
    return paths


# -- the task ---------------------------------------------------------------------------------------------
#: The symbols the encoding adds to the words: end of a statement, end of a question, the answer prompt.
STATEMENT_END, QUESTION_END, ANSWER_PROMPT = ".", "?", "-"


class Example(NamedTuple):
    """One sequence of a split: a story, or a window of a long one (see :class:`BabiTask`), and its task.

    ``lines`` is a story as :func:`parse_babi` returns them; the questions' ``supporting`` indices are
    renumbered to the window's statements (supporting facts that fell outside the window are dropped).
    """

    task: int
    lines: tuple[Line, ...]


class SplitBatch(NamedTuple):
    """A batch of a split in order (:meth:`BabiTask.split_batches`) and the bAbI task of each sequence."""

    batch: Batch
    tasks: np.ndarray  # (B,) int64


class BabiSummary(NamedTuple):
    """The DNC paper's summary of per-task errors (:func:`summarize_errors`)."""

    per_task: dict[int, float]  # bAbI task -> fraction of its questions answered wrong
    mean: float  # the mean over tasks (each task counts once, whatever its number of questions)
    failed: int  # tasks with an error above the threshold (5 %: bAbI's "failed")


def summarize_errors(errors: dict, *, threshold: float = 0.05) -> BabiSummary:
    """Mean error over tasks and the number of failed tasks (error > ``threshold``) of :meth:`BabiTask.per_task_errors`.

    Parameters
    ----------
    errors : dict of int to float
        Error rate per bAbI task, each in [0, 1].
    threshold : float
        A task fails when its error exceeds this; 0.05 is the "passed" of Weston et al. (2015) that the
        DNC (Graves et al. 2016) and SAM (Rae et al. 2016, arXiv:1610.09027) papers report.
    """
    if not isinstance(errors, dict) or not errors:
        raise TypeError(f"errors: expected a non-empty dict of task -> error rate, got {type(errors).__name__}")
    for task, e in errors.items():
        _check_task(task)
        if isinstance(e, bool) or not isinstance(e, (int, float, np.floating)) or not 0.0 <= float(e) <= 1.0:
            raise ValueError(f"errors[{task}]: expected an error rate in [0, 1], got {e!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a number in [0, 1], got {threshold!r}")
    per_task = {int(t): float(e) for t, e in errors.items()}
    return BabiSummary(per_task, float(np.mean(list(per_task.values()))), sum(e > threshold for e in per_task.values()))


@lru_cache(maxsize=1 << 16)
def _words(text: str) -> tuple[str, ...]:
    """The tokens of a line without its closing punctuation (the encoding adds its own symbol)."""
    tokens = list(tokenize(text))
    while tokens and all(_is_punct(c) for c in tokens[-1]):
        tokens.pop()
    return tuple(tokens)


def encode_words(lines: Sequence[Line]) -> tuple[list[str], list[str | None]]:
    """The symbols a story is read as, and the target of each step (None where nothing is scored).

    Each statement is its words then ``"."``; each question its words, ``"?"``, then one ``"-"`` per
    answer word, whose target is that word (Graves et al. 2016, Methods, "bAbI").

    >>> symbols, targets = encode_words([Statement("Mary went home."), Question("Where is Mary?", ("home",), (0,))])
    >>> symbols
    ['mary', 'went', 'home', '.', 'where', 'is', 'mary', '?', '-']
    >>> targets[-2:]
    [None, 'home']
    """
    symbols: list[str] = []
    targets: list[str | None] = []
    for line in lines:
        if isinstance(line, Statement):
            words = [*_words(line.text), STATEMENT_END]
            symbols += words
            targets += [None] * len(words)
        elif isinstance(line, Question):
            words = [*_words(line.text), QUESTION_END]
            symbols += words + [ANSWER_PROMPT] * len(line.answer)
            targets += [None] * len(words) + list(line.answer_tokens)
        else:
            raise TypeError(f"lines: expected Statement and Question lines, got {type(line).__name__}")
    return symbols, targets


def _windows(task: int, story: Sequence[Line], k: int | None) -> list[Example]:
    """Cut ``story`` so that every question sees the last min(k, n) of the n statements before it.

    A question joins the current window while the window holds at most ``k`` statements up to it;
    otherwise a new window starts ``k`` statements before it. Statements after the last question
    (which nothing asks about) are dropped, and so are stories without questions.
    """
    n = 0
    positions = []  # (line index, statements before it) of each question
    for j, line in enumerate(story):
        if isinstance(line, Question):
            positions.append((j, n))
        else:
            n += 1
    groups: list[tuple[int, list[int]]] = []  # (first statement, line indices of its questions)
    for j, before in positions:
        if groups and (k is None or before - groups[-1][0] <= k):
            groups[-1][1].append(j)
        else:
            groups.append((0 if k is None else max(0, before - k), [j]))
    out = []
    for start, questions in groups:
        lines: list[Line] = []
        n, keep = 0, set(questions)
        for j, line in enumerate(story[: questions[-1] + 1]):
            if isinstance(line, Statement):
                if n >= start:
                    lines.append(line)
                n += 1
            elif j in keep:
                support = tuple(i - start for i in line.supporting if i >= start)
                lines.append(Question(line.text, line.answer, support))
        out.append(Example(task, tuple(lines)))
    return out


class _Encoded(NamedTuple):
    inputs: np.ndarray  # (T_b,) int64 symbol indices
    targets: np.ndarray  # (T_b,) int64 answer word indices, 0 where not scored
    question: np.ndarray  # (T_b,) int64 the question of each answer step, -1 elsewhere


@dataclass(frozen=True)
class BabiTask(Task):
    r"""bAbI question answering as one sequence per story, scored on the answer words.

    Parameters
    ----------
    tasks : tuple of int
        The bAbI tasks trained on jointly (a list, e.g. from JSON, is accepted). Default: the tasks of
        our generator, :data:`GENERATED_TASKS`.
    data : str or None
        A folder with the official files (``tasks_1-20_v1-2`` or one family folder of it, ``~`` expanded),
        read with :func:`load_babi`. None: generate the stories with :func:`generate_task`, deterministically
        from ``world_seed``.
    family : str
        The family read from ``data`` (one of :data:`FAMILIES`); ignored without ``data``.
    questions_per_task : int
        Without ``data``: questions generated per task for the train split, and as many for the test
        split from another seed — exactly the files ``write_family(root, tasks,
        num_questions=questions_per_task, seed=world_seed)`` writes. Ignored with ``data``.
    max_sentences : int or None
        K: every question sees only the last K statements before it, as in the memory of MemN2N
        (Sukhbaatar et al. 2015, arXiv:1503.08895), which bounds the length of the long stories of
        tasks 2 and 3. A story whose questions all come within its first K statements stays one
        sequence; a longer one is cut into windows (see Notes). None: whole stories.
    world_seed : int
        Seeds the generated stories (the batches come from the ``rng`` given to :meth:`sample`).

    Notes
    -----
    **Encoding** (Graves et al. 2016, Methods, "bAbI"; Rae et al. 2016): the words of all stories of
    all splits of the chosen tasks, lowercased (:func:`tokenize`, closing punctuation removed), and
    the symbols ``"."`` (end of statement), ``"?"`` (end of question) and ``"-"`` (answer prompt) form
    the sorted :attr:`vocabulary` of V symbols. A story is read one symbol per step, one-hot: each
    statement's words then ``"."``; each question's words then ``"?"``, then one ``"-"`` per answer word,
    where the target is that word. Only those steps are scored (mask 1). ``inputs`` are float64
    (T, B, V), ``targets`` int64 (T, B) (0 where the mask is 0), ``mask`` float64 (T, B), and
    ``input_size = output_size = V``.

    **Windows.** A question joins the current window of its story while the window holds at most K
    statements up to it; otherwise a new window starts K statements before it. So every question
    appears once and sees exactly the last min(K, n) of the n statements before it; statements after a
    story's last question are dropped. :meth:`examples` lists the windows.

    **Sampling.** :meth:`sample` draws windows uniformly from the train split of all chosen tasks (joint
    training): a task is drawn in proportion to its number of windows (task 4's stories hold one
    question, the others several).

    **Scoring.** :meth:`metric` is the error rate over answer words per sequence. :meth:`per_task_errors`
    scores a whole split as the DNC paper does: a question is wrong if any of its answer words is, and
    a task's error is the fraction of its questions answered wrong; :func:`summarize_errors` gives the
    mean over tasks and the number of failed tasks (error > 5 %).

    References
    ----------
    Weston et al. (2015), *Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks*,
    arXiv:1502.05698.
    Graves et al. (2016), *Hybrid computing using a neural network with dynamic external memory*,
    Nature 538, 471–476.
    Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
    arXiv:1610.09027.

    Examples
    --------
    >>> task = BabiTask(tasks=[1, 6], questions_per_task=20)
    >>> batch = task.sample(4, np.random.default_rng(0))
    >>> batch.inputs.shape[1:] == (4, task.input_size), batch.targets.dtype
    (True, dtype('int64'))
    """

    tasks: tuple[int, ...] = GENERATED_TASKS
    data: str | None = None
    family: str = "en-10k"
    questions_per_task: int = 1000
    max_sentences: int | None = 50
    world_seed: int = 0

    loss = "softmax_ce"
    metric_name = "answer_errors"
    metric_label = "answer error rate"
    metric_target = 0.05

    def __post_init__(self):
        tasks = self.tasks
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Iterable):
            raise TypeError(f"tasks: expected a tuple or list of bAbI task numbers, got {type(tasks).__name__}")
        tasks = tuple(tasks)
        for t in tasks:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t not in TASK_NAMES:
                raise ValueError(f"tasks: expected bAbI task numbers in 1..20, got {t!r}")
        tasks = tuple(int(t) for t in tasks)
        if not tasks:
            raise ValueError("tasks: expected at least one bAbI task, got none")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks: expected each task once, got {list(tasks)}")
        object.__setattr__(self, "tasks", tasks)
        if self.family not in FAMILIES:
            raise ValueError(f"family: expected one of {', '.join(FAMILIES)}, got {self.family!r}")
        _check_int(self.questions_per_task, "questions_per_task", minimum=1)
        if self.max_sentences is not None:
            _check_int(self.max_sentences, "max_sentences", minimum=1)
        _check_int(self.world_seed, "world_seed", minimum=0)
        if self.data is None:
            missing = [t for t in tasks if t not in GENERATED_TASKS]
            if missing:
                raise ValueError(
                    f"tasks: expected tasks our generator writes {GENERATED_TASKS} (pass data= for the official "
                    f"files), got {missing}"
                )
            return
        if not isinstance(self.data, (str, os.PathLike)):
            raise TypeError(f"data: expected a folder path (str) or None, got {type(self.data).__name__}")
        object.__setattr__(self, "data", os.fspath(Path(self.data).expanduser()))
        if not Path(self.data).is_dir():
            raise ValueError(
                f"data: expected a folder holding the official bAbI files (tasks_1-20_v1-2 or its {self.family} "
                f"folder), got {self.data!r}, which is not a directory"
            )
        for t in tasks:
            for split in self.splits:
                try:
                    find_task_files(self.data, family=self.family, task=t, split=split)
                except ValueError as e:
                    raise ValueError(
                        f"data: expected the {self.family} files of task {t} in {self.data!r}: {e}"
                    ) from None

    # -- the stories --------------------------------------------------------------------------------------
    @property
    def splits(self) -> tuple[str, ...]:
        """The splits: ``("train", "test")``, and ``"valid"`` too in the ``en-valid*`` families."""
        return _splits(self.family) if self.data is not None else ("train", "test")

    @cached_property
    def _stories(self) -> dict[str, list[tuple[int, tuple[Line, ...]]]]:
        out: dict[str, list[tuple[int, tuple[Line, ...]]]] = {split: [] for split in self.splits}
        for t in self.tasks:
            for k, split in enumerate(self.splits):
                if self.data is None:  # write_family's seeds: the k-th split of family "en"
                    stories = generate_task(t, num_questions=self.questions_per_task, seed=self.world_seed * 3 + k)
                else:
                    stories = load_babi(self.data, t, family=self.family, split=split)
                out[split] += [(t, tuple(story)) for story in stories]
        return out

    def _check_split(self, split) -> str:
        if split not in self.splits:
            raise ValueError(f"split: expected one of {', '.join(self.splits)}, got {split!r}")
        return split

    @cached_property
    def _examples(self) -> dict[str, tuple[Example, ...]]:
        return {
            split: tuple(e for t, story in stories for e in _windows(t, story, self.max_sentences))
            for split, stories in self._stories.items()
        }

    def examples(self, split: str = "train") -> tuple[Example, ...]:
        """The sequences of ``split`` in order: the windows of the stories, task after task."""
        return self._examples[self._check_split(split)]

    @cached_property
    def vocabulary(self) -> tuple[str, ...]:
        """The V symbols, sorted: every word of every split's stories and answers, and ``.``, ``?``, ``-``."""
        words = {STATEMENT_END, QUESTION_END, ANSWER_PROMPT}
        for stories in self._stories.values():
            for _, story in stories:
                for line in story:
                    words.update(_words(line.text))
                    if isinstance(line, Question):
                        words.update(line.answer_tokens)
        return tuple(sorted(words))

    @cached_property
    def index(self) -> dict[str, int]:
        """Symbol -> its position in :attr:`vocabulary` (its one-hot input and its class)."""
        return {w: i for i, w in enumerate(self.vocabulary)}

    @property
    def input_size(self) -> int:
        return len(self.vocabulary)

    @property
    def output_size(self) -> int:
        return len(self.vocabulary)

    @property
    def level_range(self) -> tuple[int, int]:
        return (1, 1)

    # -- the encoding ---------------------------------------------------------------------------------------
    def _encode(self, example: Example) -> _Encoded:
        symbols, targets = encode_words(example.lines)
        question = np.full(len(symbols), -1, np.int64)
        q = -1
        for t, (s, target) in enumerate(zip(symbols, targets)):
            if s == QUESTION_END:
                q += 1
            if target is not None:
                question[t] = q
        ids = np.array([self.index[s] for s in symbols], np.int64)
        answers = np.array([self.index[w] if w is not None else 0 for w in targets], np.int64)
        return _Encoded(ids, answers, question)

    @cached_property
    def _encoded_splits(self) -> dict[str, tuple[_Encoded, ...]]:
        return {}

    def _encoded(self, split: str) -> tuple[_Encoded, ...]:
        """The encoded examples of ``split``, encoded on first use (training needs only "train")."""
        if split not in self._encoded_splits:
            self._encoded_splits[split] = tuple(self._encode(e) for e in self._examples[split])
        return self._encoded_splits[split]

    def _batch(self, encoded: Sequence[_Encoded]) -> Batch:
        T, B, V = max(len(e.inputs) for e in encoded), len(encoded), self.input_size
        ids = np.full((T, B), -1, np.int64)
        targets = np.zeros((T, B), np.int64)  # (T, B)
        mask = np.zeros((T, B))  # (T, B)
        for b, e in enumerate(encoded):
            ids[: len(e.inputs), b] = e.inputs
            targets[: len(e.inputs), b] = e.targets
            mask[: len(e.inputs), b] = e.question >= 0
        inputs = np.zeros((T, B, V))  # (T, B, V)
        t, b = np.nonzero(ids >= 0)
        inputs[t, b, ids[t, b]] = 1.0
        return Batch(inputs, targets, mask)

    def decode(self, inputs) -> list[list[str]]:
        """The symbols of each sequence of a batch's ``inputs`` (T, B, V), padding (all-zero steps) left out."""
        inputs = as_float_array(inputs, "inputs", ndim=3)
        if inputs.shape[2] != self.input_size:
            raise ValueError(f"inputs: expected shape (T, B, {self.input_size}), got {inputs.shape}")
        hot = inputs.sum(axis=2)  # (T, B)
        if not (np.all(np.isin(inputs, (0.0, 1.0))) and np.all(np.isin(hot, (0.0, 1.0)))):
            raise ValueError("inputs: expected one-hot or all-zero rows")
        ids = np.argmax(inputs, axis=2)  # (T, B)
        return [[self.vocabulary[i] for i, h in zip(ids[:, b], hot[:, b]) if h] for b in range(inputs.shape[1])]

    # -- sampling and scoring ------------------------------------------------------------------------------
    def sample(self, batch_size: int, rng: np.random.Generator, *, level: int | None = None) -> Batch:
        """A batch of train windows drawn uniformly (all chosen tasks mixed), padded at the end with mask 0.

        Returns ``inputs`` float64 one-hot (T, B, V), ``targets`` int64 (T, B), ``mask`` float64 (T, B),
        T the longest sequence drawn.
        """
        batch_size = _check_int(batch_size, "batch_size", minimum=1)
        _check_rng(rng)
        if level is not None and level != 1:
            raise ValueError(f"level: expected None or 1 (the task has one level), got {level!r}")
        train = self._encoded("train")
        return self._batch([train[i] for i in rng.integers(len(train), size=batch_size)])

    def split_batches(self, split: str = "test", batch_size: int = 64):
        """Iterate over the whole of ``split`` in order (:meth:`examples`) as :class:`SplitBatch` pairs.

        Yields ``SplitBatch(batch, tasks)``: a :class:`~refmann.tasks.Batch` of up to ``batch_size``
        sequences and the bAbI task of each, int64 (B,).
        """
        self._check_split(split)
        batch_size = _check_int(batch_size, "batch_size", minimum=1)
        return self._split_batches(split, batch_size)

    def _split_batches(self, split: str, batch_size: int):
        examples, encoded = self._examples[split], self._encoded(split)
        for i in range(0, len(examples), batch_size):
            tasks = np.array([e.task for e in examples[i : i + batch_size]], np.int64)
            yield SplitBatch(self._batch(encoded[i : i + batch_size]), tasks)

    def metric(self, logits, batch: Batch) -> np.ndarray:
        """Error rate over the answer words of each sequence, shape (B,); see :func:`~refmann.tasks.error_rate`."""
        logits = as_float_array(logits, "logits", ndim=3)
        if logits.shape[2] != self.output_size:
            raise ValueError(
                f"logits: expected shape (T, B, {self.output_size}) (V = the vocabulary), got {logits.shape}"
            )
        return error_rate(logits, batch)

    def per_task_errors(self, forward, split: str = "test", batch_size: int = 64) -> dict[int, float]:
        """The fraction of each task's questions in ``split`` answered wrong, as the DNC paper scores bAbI.

        Parameters
        ----------
        forward : callable
            ``forward(inputs) -> logits``, inputs (T, B, V), logits (T, B, V), e.g. ``model.forward``.
        split : str
            One of :attr:`splits`.
        batch_size : int
            Sequences per call of ``forward``.

        Returns
        -------
        dict of int to float
            bAbI task -> error in [0, 1], in the order of ``tasks``. A question is wrong if the most likely
            word at any of its answer steps is not the answer word there. :func:`summarize_errors` gives
            the mean over tasks and the number of failed tasks (error > 5 %).
        """
        if not callable(forward):
            raise TypeError(
                f"forward: expected a callable inputs -> logits (e.g. model.forward), got {type(forward).__name__}"
            )
        self._check_split(split)
        batch_size = _check_int(batch_size, "batch_size", minimum=1)
        wrong = dict.fromkeys(self.tasks, 0)
        total = dict.fromkeys(self.tasks, 0)
        encoded = self._encoded(split)
        for k, (batch, tasks) in enumerate(self._split_batches(split, batch_size)):
            logits = as_float_array(forward(batch.inputs), "forward(inputs)", ndim=3)
            if logits.shape != batch.inputs.shape[:2] + (self.output_size,):
                raise ValueError(
                    f"forward(inputs): expected logits of shape {batch.inputs.shape[:2] + (self.output_size,)} "
                    f"(T, B, V), got {logits.shape}"
                )
            miss = np.argmax(logits, axis=2) != batch.targets  # (T, B)
            for b, task in enumerate(tasks):
                e = encoded[k * batch_size + b]
                steps = e.question >= 0
                per_question = np.bincount(e.question[steps], weights=miss[: len(e.question), b][steps])
                wrong[int(task)] += int(np.count_nonzero(per_question))
                total[int(task)] += len(per_question)
        return {t: wrong[t] / total[t] if total[t] else 0.0 for t in self.tasks}
