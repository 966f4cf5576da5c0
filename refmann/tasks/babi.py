r"""bAbI: a loader of the official file format, and a small generator of our own that writes it.

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
6 (yes/no), 11 (basic coreference), 12 (conjunction), 13 (compound coreference) and 15 (basic
deduction). Tasks 1–3, 6 and 11–13 simulate people moving between places and picking up and
dropping objects and ask questions of the simulation's state; tasks 4 and 15 draw a few relations
and ask what follows from them. Answers are read from the state; each question's supporting facts
are the statements that fixed that state. It is our own simulation in the spirit of the paper's, not
a port of the original Lua generator, and it does not reproduce the official data's statistics.

The tasks and their format: Weston, Bordes, Chopra, Rush, van Merriënboer, Joulin & Mikolov (2015),
*Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks*, arXiv:1502.05698.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from refmann._checks import check_positive_int, check_seed

__all__ = [
    "FAMILIES",
    "GENERATED_TASKS",
    "TASK_NAMES",
    "Question",
    "Statement",
    "find_task_files",
    "format_babi",
    "generate_task",
    "load_babi",
    "parse_babi",
    "statements",
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
GENERATED_TASKS = (1, 2, 3, 4, 6, 11, 12, 13, 15)

_PEOPLE = {"Mary": "she", "Sandra": "she", "Julie": "she", "Emma": "she",
           "John": "he", "Daniel": "he", "Fred": "he", "Bill": "he"}  # fmt: skip
_PLACES = ("bathroom", "hallway", "kitchen", "garden", "office", "bedroom")
_OBJECTS = ("apple", "football", "milk", "book", "key", "cup")
_MOVE = ("moved", "went", "journeyed", "travelled", "went back")
_GRAB = ("picked up", "grabbed", "took")
_DROP = ("dropped", "put down", "left")
_THEN = ("Then", "After that", "Afterwards", "Following that")
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

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def say(self, text: str) -> int:
        self.lines.append(Statement(text))
        self.n_statements += 1
        return self.n_statements - 1

    def ask(self, text: str, answer: str, support) -> None:
        self.lines.append(Question(text, (answer,), tuple(sorted(set(support)))))
        self.recent = []

    def topic(self, candidates: list[str]) -> str:
        """What to ask about: mostly someone or something of the latest statements, else any candidate."""
        recent = [c for c in candidates if c in self.recent]
        return self.pick(recent if recent and self.rng.random() < 0.75 else candidates)

    # actions
    def move(self, people: tuple[str, ...], *, refer: bool = False) -> None:
        here = {self.location[p][0] for p in people if p in self.location}
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
            if task in (2, 3, 6) and w.location and r < 0.4 and w.grab_or_drop():
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
        Emily is a cat. What is Emily afraid of?" (two: the membership and the rule).
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
