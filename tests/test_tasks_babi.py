"""refmann.tasks.babi: the official line format both ways, the file layout, and a generator checked by an oracle."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann.tasks.babi import (
    FAMILIES,
    GENERATED_TASKS,
    TASK_NAMES,
    Question,
    Statement,
    find_task_files,
    format_babi,
    generate_task,
    load_babi,
    parse_babi,
    statements,
    tokenize,
    write_babi,
    write_family,
)

# -- the format, both ways ------------------------------------------------------------------------------

WORDS = st.sampled_from(["Mary", "went", "to", "the", "kitchen", "apple", "n", "émile", "रसोई"])


@st.composite
def stories(draw):
    """Arbitrary stories: statements and questions in any order, supports among the earlier statements."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        lines, n_statements = [Statement(" ".join(draw(st.lists(WORDS, min_size=1, max_size=4))) + ".")], 1
        for _ in range(draw(st.integers(0, 6))):
            if draw(st.booleans()):
                lines.append(Statement(" ".join(draw(st.lists(WORDS, min_size=1, max_size=4))) + "."))
                n_statements += 1
            else:
                text = " ".join(draw(st.lists(WORDS, min_size=1, max_size=4))) + "?"
                answer = tuple(draw(st.lists(WORDS, min_size=1, max_size=3)))
                support = tuple(draw(st.lists(st.integers(0, n_statements - 1), max_size=3, unique=True)))
                lines.append(Question(text, answer, support))
        out.append(tuple(lines))
    return out


@given(stories=stories())
def test_parse_inverts_format_on_arbitrary_stories(stories):
    assert parse_babi(format_babi(stories)) == stories


@given(task=st.sampled_from(GENERATED_TASKS), seed=st.integers(0, 2**16), n=st.integers(1, 12))
@settings(max_examples=30)
def test_parse_inverts_write_on_generated_stories(tmp_path_factory, task, seed, n):
    stories = generate_task(task, num_questions=n, seed=seed)
    path = write_babi(stories, tmp_path_factory.mktemp("babi") / "qa.txt")
    assert parse_babi(path.read_text(encoding="utf-8")) == stories
    assert parse_babi(path.read_text(encoding="utf-8").splitlines(keepends=True)) == stories  # lines work too


# A snippet written by hand in the official format: two stories, ids restarting at 1, question lines taking
# ids too (so line id 4 is the third statement), a space before the tab as in the official files, a
# comma-separated answer (task 8's lists) and one of task 19's directions.
SNIPPET = (
    "1 Mary moved to the bathroom.\n"
    "2 John went to the hallway.\n"
    "3 Where is Mary? \tbathroom\t1\n"
    "4 Mary picked up the apple.\n"
    "5 Mary grabbed the football.\n"
    "6 What is Mary carrying?\tapple,football\t4 5\n"
    "1 The kitchen is north of the garden.\n"
    "2 The office is west of the garden.\n"
    "3 How do you go from the kitchen to the office?\ts,w\t2 1\n"
)


def test_a_handwritten_snippet_parses_to_its_structure():
    got = parse_babi(SNIPPET)
    assert got == [
        (
            Statement("Mary moved to the bathroom."),
            Statement("John went to the hallway."),
            Question("Where is Mary?", ("bathroom",), (0,)),
            Statement("Mary picked up the apple."),
            Statement("Mary grabbed the football."),
            Question("What is Mary carrying?", ("apple", "football"), (2, 3)),
        ),
        (
            Statement("The kitchen is north of the garden."),
            Statement("The office is west of the garden."),
            Question("How do you go from the kitchen to the office?", ("s", "w"), (1, 0)),
        ),
    ]
    carrying = got[0][5]
    assert [statements(got[0])[i].text for i in carrying.supporting] == [
        "Mary picked up the apple.",
        "Mary grabbed the football.",
    ]
    assert carrying.tokens == ("what", "is", "mary", "carrying", "?")
    assert Question("x?", ("Mary",), ()).answer_tokens == ("mary",)


def test_the_writer_uses_the_official_line_format():
    story = (Statement("A b."), Question("Q?", ("x", "y"), (0,)), Statement("C d."), Question("R?", ("z",), (1, 0)))
    assert format_babi([story, story[:2]]) == "1 A b.\n2 Q?\tx,y\t1\n3 C d.\n4 R?\tz\t3 1\n1 A b.\n2 Q?\tx,y\t1\n"


def test_a_question_line_without_supporting_facts_parses_with_none():
    assert parse_babi("1 A.\n2 Q?\tx\n") == [(Statement("A."), Question("Q?", ("x",), ()))]


@pytest.mark.parametrize(
    "text, number, expected",
    [
        ("Mary went.\n", 1, "expected 'ID text'"),
        ("1 A.\nx B.\n", 2, "expected 'ID text'"),
        ("1 A.\n3 B.\n", 2, "expected line id 1 (a new story) or 2"),
        ("0 A.\n", 1, "expected line id 1"),
        ("1 A.\n2 \n", 2, "expected text"),
        ("1 A.\n2 Q?\t\t1\n", 2, "expected a non-empty answer"),
        ("1 A.\n2 Q?\ta,,b\t1\n", 2, "expected a non-empty answer"),
        ("1 A.\n2 Q?\ta\t1 x\n", 2, "expected supporting ids as space-separated integers"),
        ("1 A.\n2 Q?\ta\t5\n", 2, "expected supporting ids naming earlier statements"),
        ("1 A.\n2 Q?\ta\t1\n3 R?\tb\t2\n", 3, "expected supporting ids naming earlier statements"),  # a question
        ("1 A.\n2 B.\n1 Q?\ta\t2\n", 3, "expected supporting ids naming earlier statements"),  # another story's
        ("1 A.\n2 Q?\ta\t1\textra\n", 2, "at most 3 tab-separated fields"),
    ],
)
def test_malformed_lines_are_refused_with_their_line_number(text, number, expected):
    with pytest.raises(ValueError, match=rf"line {number}: .*{re.escape(expected)}"):
        parse_babi(text, source="qa.txt")


def test_parse_refuses_what_is_not_text():
    with pytest.raises(TypeError, match="text_or_lines"):
        parse_babi(b"1 A.\n")
    with pytest.raises(TypeError, match="text_or_lines"):
        parse_babi(["1 A.", 2])
    with pytest.raises(TypeError, match="text_or_lines"):
        parse_babi(3)


@pytest.mark.parametrize(
    "story, error, expected",
    [
        ((Question("Q?", ("a",), (0,)), Statement("A.")), ValueError, r"supporting: expected indices of earlier"),
        ((Statement("A."), Question("Q?", ("a,b",), ())), ValueError, r"answer: expected non-empty words"),
        ((Statement("A.\tB"),), ValueError, r"text: expected non-empty text without tabs"),
        ((Statement(" A."),), ValueError, r"text: expected non-empty text"),
        ((Statement("A."), Question("Q?", (), ())), ValueError, r"answer: expected at least one word"),
        (("1 A.",), TypeError, r"stories\[0\]\[0\]: expected a Statement or a Question"),
    ],
)
def test_the_writer_refuses_what_it_cannot_write_faithfully(story, error, expected):
    with pytest.raises(error, match=expected):
        format_babi([story])


def test_tokenize_lowercases_and_splits_punctuation_off():
    assert tokenize("Where is Mary? ") == ("where", "is", "mary", "?")
    assert tokenize("Mary, John and Bill went to the office.") == (
        *("mary", ",", "john", "and", "bill", "went", "to", "the", "office", "."),
    )
    assert tokenize("मैरी रसोई में गई।") == ("मैरी", "रसोई", "में", "गई", "।")  # Devanagari marks stay in words
    assert tokenize("(a)") == ("(", "a", ")")


# -- the layout -------------------------------------------------------------------------------------------


def test_both_file_name_schemes_are_found_from_the_release_root_or_the_family_folder(tmp_path):
    root = tmp_path / "tasks_1-20_v1-2"
    write_family(root, [1, 2], num_questions=3, seed=0, family="en")
    write_family(root, [1], num_questions=3, seed=0, family="en-valid")
    (root / "en" / "qa10_indefinite-knowledge_train.txt").write_text("1 A.\n")  # qa1_* must not match qa10_*
    for split in ("train", "test"):
        path = find_task_files(root, family="en", task=1, split=split)
        assert path == root / "en" / f"qa1_single-supporting-fact_{split}.txt"
        assert find_task_files(root / "en", family="en", task=1, split=split) == path
    for split in ("train", "valid", "test"):
        path = find_task_files(root, family="en-valid", task=1, split=split)
        assert path == root / "en-valid" / f"qa1_{split}.txt"
        assert find_task_files(root / "en-valid", family="en-valid", task=1, split=split) == path
    assert find_task_files(root, family="en", task=10).name == "qa10_indefinite-knowledge_train.txt"
    stories = load_babi(root, 2, family="en", split="test")
    assert stories == parse_babi((root / "en" / "qa2_two-supporting-facts_test.txt").read_text())
    assert sum(isinstance(line, Question) for story in stories for line in story) == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_uses_its_scheme(tmp_path, family):
    folder = tmp_path / family
    folder.mkdir()
    name = "qa3_test.txt" if "valid" in family else f"qa3_{TASK_NAMES[3]}_test.txt"
    (folder / name).write_text("1 A.\n2 Q?\ta\t1\n", encoding="utf-8")
    assert find_task_files(tmp_path, family=family, task=3, split="test") == folder / name
    assert load_babi(tmp_path, 3, family=family, split="test") == [(Statement("A."), Question("Q?", ("a",), (0,)))]


def test_missing_files_and_bad_arguments_are_named(tmp_path):
    (tmp_path / "en").mkdir()
    with pytest.raises(ValueError, match=r"no en file for task 4, split test: looked for qa4_\*_test.txt in"):
        find_task_files(tmp_path, family="en", task=4, split="test")
    with pytest.raises(ValueError, match=r"looked for qa4_valid.txt"):
        find_task_files(tmp_path, family="en-valid", task=4, split="valid")
    with pytest.raises(ValueError, match="split: expected one of train, test for family 'en', got 'valid'"):
        find_task_files(tmp_path, family="en", task=1, split="valid")
    with pytest.raises(ValueError, match="family: expected one of en, en-10k"):
        find_task_files(tmp_path, family="fr", task=1)
    with pytest.raises(ValueError, match="task: expected an int in 1..20, got 21"):
        find_task_files(tmp_path, task=21)
    with pytest.raises(TypeError, match="task: expected an int"):
        find_task_files(tmp_path, task=1.0)
    with pytest.raises(ValueError, match="root: expected a directory"):
        find_task_files(tmp_path / "absent")


def test_generator_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="task: expected one of the generated tasks"):
        generate_task(16, num_questions=1, seed=0)
    with pytest.raises(ValueError, match="num_questions"):
        generate_task(1, num_questions=0, seed=0)
    with pytest.raises(TypeError, match="seed"):
        generate_task(1, num_questions=1, seed=-1)
    with pytest.raises(ValueError, match="family: expected one of en, en-10k, en-valid"):
        write_family(tmp_path, [1], num_questions=1, seed=0, family="hn")
    with pytest.raises(ValueError, match="tasks: expected generated tasks"):
        write_family(tmp_path, [1, 19], num_questions=1, seed=0)


# -- the generator, against an oracle -----------------------------------------------------------------------
# The oracle reads the statements' English on its own (its own patterns and genders) and replays them.

GENDER = {"mary": "she", "sandra": "she", "julie": "she", "emma": "she"}
MOVE = re.compile(r"^(?P<subject>.+?) (?:moved|went|went back|journeyed|travelled) to the (?P<place>\w+)\.$")
GRAB = re.compile(r"^(?P<person>[A-Z]\w+) (?:picked up|grabbed|took) the (?P<object>\w+)\.$")
DROP = re.compile(r"^(?P<person>[A-Z]\w+) (?:dropped|put down|left) the (?P<object>\w+)\.$")
RELATION = re.compile(r"^The (?P<a>\w+) is (?P<direction>north|south|east|west) of the (?P<b>\w+)\.$")
MEMBER = re.compile(r"^(?P<name>[A-Z]\w+) is a (?P<kind>\w+)\.$")
FEAR = re.compile(r"^(?P<kinds>[A-Z]\w+) are afraid of (?P<feared>\w+)\.$")
SINGULAR = {"mice": "mouse", "cats": "cat", "wolves": "wolf", "sheep": "sheep"}
CONNECTIVE = re.compile(r"^(?:Then|After that|Afterwards|Following that) (?P<pronoun>he|she|they)$")


def replay(facts):
    """The state after ``facts`` (statement texts, in order), or None where a pronoun has no antecedent."""
    where, holder, lying, history, previous = {}, {}, {}, {}, None
    relations, kind_of, fears = set(), {}, {}
    for text in facts:
        if m := RELATION.match(text):
            relations.add((m["a"], m["direction"], m["b"]))
        elif m := MEMBER.match(text):
            kind_of[m["name"]] = m["kind"]
        elif m := FEAR.match(text):
            fears[SINGULAR[m["kinds"].lower()]] = SINGULAR[m["feared"]]
        elif m := MOVE.match(text):
            subject = m["subject"]
            if c := CONNECTIVE.match(subject):
                if previous is None:
                    return None
                people = previous
                assert c["pronoun"] == ("they" if len(people) > 1 else GENDER.get(people[0].lower(), "he"))
            else:
                people = tuple(subject.split(" and "))
            for p in people:
                where[p] = m["place"]
            for obj, person in holder.items():  # what they carry goes with them
                if person in people:
                    history.setdefault(obj, []).append(m["place"])
            previous = people
        elif m := GRAB.match(text):
            holder[m["object"]] = m["person"]
            place, seen = where.get(m["person"]), history.setdefault(m["object"], [])
            if place is not None and seen[-1:] != [place]:
                seen.append(place)
            lying.pop(m["object"], None)
            previous = (m["person"],)
        elif m := DROP.match(text):
            lying[m["object"]] = where.get(m["person"])
            holder.pop(m["object"], None)
            previous = (m["person"],)
        else:
            raise AssertionError(f"the oracle cannot read {text!r}")
    return where, holder, lying, history, relations, kind_of, fears


def answer(question, facts):
    """The oracle's answer to ``question`` after ``facts``, or None when they do not determine it."""
    state = replay(facts)
    if state is None:
        return None
    where, holder, lying, history, relations, kind_of, fears = state
    if m := re.match(r"^What is (\w+) of the (\w+)\?$", question):
        found = {a for a, d, b in relations if (d, b) == (m[1], m[2])}
        return found.pop() if len(found) == 1 else None
    if m := re.match(r"^What is the (\w+) (\w+) of\?$", question):
        found = {b for a, d, b in relations if (a, d) == (m[1], m[2])}
        return found.pop() if len(found) == 1 else None
    if m := re.match(r"^What is (\w+) afraid of\?$", question):
        return fears.get(kind_of.get(m[1]))
    if m := re.match(r"^Where was the (\w+) before the (\w+)\?$", question):
        seen = history.get(m[1], [])
        return seen[seen.index(m[2]) - 1] if seen.count(m[2]) == 1 and seen[0] != m[2] else None
    if m := re.match(r"^Where is the (\w+)\?$", question):
        obj = m[1]
        return where.get(holder[obj]) if obj in holder else lying.get(obj)
    if m := re.match(r"^Where is (\w+)\?$", question):
        return where.get(m[1])
    if m := re.match(r"^Is (\w+) in the (\w+)\?$", question):
        place = where.get(m[1])
        return None if place is None else ("yes" if place == m[2] else "no")
    raise AssertionError(f"the oracle cannot read {question!r}")


@pytest.mark.parametrize("task", GENERATED_TASKS)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 15))
@settings(max_examples=15)
def test_every_answer_follows_from_its_supporting_facts_alone_and_from_the_story(task, seed, n):
    stories = generate_task(task, num_questions=n, seed=seed)
    assert sum(isinstance(line, Question) for story in stories for line in story) == n
    for story in stories:
        seen = []
        for line in story:
            if isinstance(line, Statement):
                seen.append(line.text)
                continue
            assert len(line.answer) == 1 and line.supporting == tuple(sorted(set(line.supporting)))
            assert all(i < len(seen) for i in line.supporting)
            support = [seen[i] for i in line.supporting]
            assert answer(line.text, support) == line.answer[0]  # the supporting facts alone determine it
            assert answer(line.text, seen) == line.answer[0]  # and the whole story agrees
            for k in range(len(support)):  # each supporting fact is needed
                assert answer(line.text, support[:k] + support[k + 1 :]) != line.answer[0]


def test_each_task_exercises_what_it_is_named_for():
    """Over a few hundred questions: the supporting-fact counts, yes and no, pronouns and conjunctions occur."""
    counts = {}
    for task in GENERATED_TASKS:
        lines = [line for story in generate_task(task, num_questions=200, seed=1) for line in story]
        qs = [line for line in lines if isinstance(line, Question)]
        counts[task] = {len(q.supporting) for q in qs}
        text = " ".join(line.text for line in lines)
        if task == 6:
            assert {q.answer for q in qs} == {("yes",), ("no",)}
        if task in (11, 13):
            assert re.search(r"\b(he|she|they)\b", text)
        if task in (12, 13):
            assert " and " in text
    assert counts[1] == counts[4] == counts[6] == counts[12] == {1}
    assert counts[2] == counts[15] == {2}
    assert counts[3] == {3}
    assert counts[11] == counts[13] == {1, 2}


def test_generation_is_deterministic_given_the_seed(tmp_path):
    assert generate_task(2, num_questions=20, seed=3) == generate_task(2, num_questions=20, seed=3)
    assert generate_task(2, num_questions=20, seed=3) != generate_task(2, num_questions=20, seed=4)
    a = write_family(tmp_path / "a", [1, 11], num_questions=7, seed=5)
    b = write_family(tmp_path / "b", [1, 11], num_questions=7, seed=5)
    assert set(a) == {(t, s) for t in (1, 11) for s in ("train", "test")}
    assert all(a[k].read_text() == b[k].read_text() for k in a)
    assert a[(1, "train")].read_text() != a[(1, "test")].read_text()
