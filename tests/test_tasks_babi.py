"""refmann.tasks.babi: the line format both ways, the file layout, a generator checked by an oracle, the task."""

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann.tasks import Batch, make_task
from refmann.tasks.babi import (
    FAMILIES,
    GENERATED_TASKS,
    TASK_NAMES,
    BabiTask,
    Question,
    SplitBatch,
    Statement,
    _windows,  # the cutting of long stories, tested on its own
    find_task_files,
    format_babi,
    generate_task,
    load_babi,
    parse_babi,
    statements,
    summarize_errors,
    tokenize,
    write_babi,
    write_family,
)
from refmann.train import TrainConfig, Trainer

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
GIVE = re.compile(r"^(?P<giver>[A-Z]\w+) (?:gave|handed|passed) the (?P<object>\w+) to (?P<receiver>[A-Z]\w+)\.$")
NOT_IN = re.compile(r"^(?P<person>[A-Z]\w+) is (?:not|no longer) in the (?P<place>\w+)\.$")
CONNECTIVE = re.compile(r"^(?:Then|After that|Afterwards|Following that) (?P<pronoun>he|she|they)$")


def replay(facts):
    """The state after ``facts`` (statement texts, in order), or None where a pronoun has no antecedent."""
    where, holder, lying, history, previous = {}, {}, {}, {}, None
    relations, kind_of, fears, gives, negated = set(), {}, {}, [], {}
    for text in facts:
        if m := GIVE.match(text):
            holder.pop(m["object"], None)
            holder[m["object"]] = m["receiver"]
            gives.append((m["giver"], m["object"], m["receiver"]))
            previous = (m["giver"],)
        elif m := NOT_IN.match(text):
            where.pop(m["person"], None)
            negated[m["person"]] = m["place"]
            previous = (m["person"],)
        elif m := RELATION.match(text):
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
                negated.pop(p, None)
            for obj, person in holder.items():  # what they carry goes with them
                if person in people:
                    history.setdefault(obj, []).append(m["place"])
            previous = people
        elif m := GRAB.match(text):
            holder.pop(m["object"], None)
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
    return where, holder, lying, history, relations, kind_of, fears, gives, negated


def latest(gives, **known):
    """The latest giving (giver, object, receiver) that matches ``known``, as a dict, or None."""
    found = [g for g in gives if all(dict(zip(("giver", "object", "receiver"), g))[k] == v for k, v in known.items())]
    return dict(zip(("giver", "object", "receiver"), found[-1])) if found else None


def answer(question, facts):
    """The oracle's answer words to ``question`` after ``facts``, or None when they do not determine it."""
    found = _answer(question, facts)
    return None if found is None else (found,) if isinstance(found, str) else tuple(found)


def _answer(question, facts):
    state = replay(facts)
    if state is None:
        return None
    where, holder, lying, history, relations, kind_of, fears, gives, negated = state
    for pattern, keys, wanted in (
        (r"^What did (\w+) give to (\w+)\?$", ("giver", "receiver"), "object"),
        (r"^Who gave the (\w+) to (\w+)\?$", ("object", "receiver"), "giver"),
        (r"^Who received the (\w+)\?$", ("object",), "receiver"),
        (r"^Who gave the (\w+)\?$", ("object",), "giver"),
        (r"^Who did (\w+) give the (\w+) to\?$", ("giver", "object"), "receiver"),
    ):
        if m := re.match(pattern, question):
            g = latest(gives, **dict(zip(keys, m.groups())))
            return None if g is None else g[wanted]
    if m := re.match(r"^What is (\w+) carrying\?$", question):
        return tuple(obj for obj, person in holder.items() if person == m[1]) or None
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
        if m[1] in negated:  # known only not to be in one place
            return "no" if negated[m[1]] == m[2] else None
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
            assert (len(line.answer) == 1 or task == 8) and line.supporting == tuple(sorted(set(line.supporting)))
            assert all(i < len(seen) for i in line.supporting)
            support = [seen[i] for i in line.supporting]
            assert answer(line.text, support) == line.answer  # the supporting facts alone determine it
            assert answer(line.text, seen) == line.answer  # and the whole story agrees
            for k in range(len(support)):  # each supporting fact is needed
                assert answer(line.text, support[:k] + support[k + 1 :]) != line.answer


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
        if task == 5:  # every form of question, and every verb of giving
            forms = {re.sub(r"\b[A-Z]\w+\b|\b(?:the \w+)", "X", q.text) for q in qs}
            assert len(forms) == 5 and all(verb in text for verb in (" gave ", " handed ", " passed "))
        if task == 8:  # lists of one to several objects
            assert {len(q.answer) for q in qs} >= {1, 2, 3}
        if task == 9:
            assert {q.answer for q in qs} == {("yes",), ("no",)} and " no longer in " in text and " not in " in text
    assert counts[1] == counts[4] == counts[5] == counts[6] == counts[9] == counts[12] == {1}
    assert counts[8] >= {1, 2, 3}
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


# -- BabiTask: the encoding ----------------------------------------------------------------------------------
# The test's own reading of a story: the generated text is lowercase words and a closing "." or "?".

SMALL = BabiTask(tasks=(1, 5, 8, 15), questions_per_task=12, world_seed=2)


def expected_sequence(lines):
    """(symbols, answer words) of a story as the DNC encodes it, from the text alone."""
    symbols, answers = [], []
    for line in lines:
        if isinstance(line, Statement):
            symbols += line.text.lower().removesuffix(".").split() + ["."]
        else:
            symbols += line.text.lower().removesuffix("?").split() + ["?"] + ["-"] * len(line.answer)
            answers += [a.lower() for a in line.answer]
    return tuple(symbols), tuple(answers)


@given(seed=st.integers(0, 2**16), B=st.integers(1, 9))
@settings(max_examples=20)
def test_a_sampled_batch_decodes_to_stories_of_the_train_split_with_their_answers(seed, B):
    batch = SMALL.sample(B, np.random.default_rng(seed))
    T, V = batch.inputs.shape[0], SMALL.input_size
    assert batch.inputs.shape == (T, B, V) and batch.inputs.dtype == np.float64
    assert batch.targets.shape == batch.mask.shape == (T, B)
    assert batch.targets.dtype == np.int64 and batch.mask.dtype == np.float64
    known = dict(expected_sequence(e.lines) for e in SMALL.examples("train"))
    words = np.array(SMALL.vocabulary)
    for b, symbols in enumerate(SMALL.decode(batch.inputs)):
        assert tuple(symbols) in known  # a story of the train split, word for word
        n = len(symbols)
        assert np.all(batch.inputs[n:, b] == 0) and np.all(batch.inputs[:n, b].sum(axis=1) == 1)  # padded at the end
        scored = batch.mask[:, b] == 1
        assert tuple(words[batch.targets[scored, b]]) == known[tuple(symbols)]  # the answers, in order
        assert np.all(batch.targets[~scored, b] == 0)


@given(seed=st.integers(0, 2**16))
@settings(max_examples=10)
def test_the_mask_is_exactly_the_answer_prompt_steps(seed):
    batch = SMALL.sample(6, np.random.default_rng(seed))
    prompt = batch.inputs[:, :, SMALL.index["-"]] == 1  # (T, B)
    np.testing.assert_array_equal(batch.mask, prompt.astype(np.float64))
    assert set(np.unique(batch.mask)) <= {0.0, 1.0}


def test_the_vocabulary_is_sorted_built_from_every_split_and_deterministic():
    again = BabiTask(tasks=[15, 8, 5, 1][::-1], questions_per_task=12, world_seed=2)
    assert again.vocabulary == SMALL.vocabulary and again == SMALL  # a list becomes a tuple
    assert list(SMALL.vocabulary) == sorted(SMALL.vocabulary) and {".", "?", "-"} <= set(SMALL.vocabulary)
    words = set()
    for split in ("train", "test"):
        for e in SMALL.examples(split):
            words.update(*expected_sequence(e.lines))
    assert set(SMALL.vocabulary) == words  # nothing missing, nothing extra
    assert SMALL.input_size == SMALL.output_size == len(words)
    assert SMALL.index[SMALL.vocabulary[7]] == 7
    other = BabiTask(tasks=(1,), questions_per_task=12, world_seed=2)
    assert "gave" in SMALL.vocabulary and "gave" not in other.vocabulary


def test_the_generated_splits_are_write_familys_files_and_differ():
    train, test = SMALL.examples("train"), SMALL.examples("test")
    assert train != test and {e.task for e in train} == {e.task for e in test} == {1, 5, 8, 15}
    assert sum(isinstance(line, Question) for e in train if e.task == 5 for line in e.lines) == 12
    with pytest.raises(ValueError, match="split: expected one of train, test, got 'valid'"):
        SMALL.examples("valid")


@pytest.mark.parametrize("family, given_root", [("en-10k", "release"), ("en", "family")])
def test_a_folder_written_by_write_family_gives_the_same_task_as_generating(tmp_path, family, given_root):
    write_family(tmp_path, [1, 5, 8, 15], num_questions=12, seed=2, family=family)
    root = tmp_path if given_root == "release" else tmp_path / family
    read = BabiTask(tasks=[1, 5, 8, 15], data=root, family=family)
    assert read.data == str(root)
    assert read.vocabulary == SMALL.vocabulary
    for split in ("train", "test"):
        assert read.examples(split) == SMALL.examples(split)
        for (a, ta), (b, tb) in zip(read.split_batches(split, 7), SMALL.split_batches(split, 7), strict=True):
            np.testing.assert_array_equal(ta, tb)
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
    for x, y in zip(read.sample(5, np.random.default_rng(4)), SMALL.sample(5, np.random.default_rng(4)), strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_en_valid_families_have_a_valid_split(tmp_path):
    write_family(tmp_path, [1], num_questions=5, seed=0, family="en-valid")
    task = BabiTask(tasks=(1,), data=str(tmp_path), family="en-valid")
    assert task.splits == ("train", "valid", "test")
    assert sum(len(b.tasks) for b in task.split_batches("valid", 2)) == len(task.examples("valid")) > 0


# -- windows of long stories -------------------------------------------------------------------------------


def test_a_long_story_is_cut_into_windows_of_the_last_k_statements():
    s = [Statement(f"Mary went to the {p}.") for p in ("hallway", "office", "garden", "kitchen", "bedroom")]
    story = (s[0], s[1], Question("Where is Mary?", ("office",), (1,)), s[2], s[3], s[4])
    story += (Question("Where is Mary?", ("bedroom",), (4,)), Question("Is it?", ("yes",), (1, 4)))
    story += (Statement("Mary went to the office."),)  # after the last question: dropped
    whole = _windows(1, story, None)
    assert [e.lines for e in whole] == [story[:-1]]
    three = _windows(1, story, 3)
    assert [e.lines for e in three] == [
        (s[0], s[1], story[2]),
        (s[2], s[3], s[4], Question("Where is Mary?", ("bedroom",), (2,)), Question("Is it?", ("yes",), (2,))),
    ]
    assert _windows(1, (s[0],), 3) == []  # no question, nothing to learn


@given(task=st.sampled_from([2, 3, 5]), seed=st.integers(0, 2**16), k=st.integers(1, 12))
@settings(max_examples=25)
def test_every_question_appears_once_and_sees_the_last_k_statements_before_it(task, seed, k):
    stories = generate_task(task, num_questions=10, seed=seed)
    windows = [e for story in stories for e in _windows(task, story, k)]
    seen_in_windows = [
        (tuple(line.text for line in e.lines[:j] if isinstance(line, Statement)), q)
        for e in windows
        for j, q in enumerate(e.lines)
        if isinstance(q, Question)
    ]
    expected = []
    for story in stories:
        before = []
        for line in story:
            if isinstance(line, Statement):
                before.append(line)
                continue
            start = max(0, len(before) - k)
            support = tuple(i - start for i in line.supporting if i >= start)
            expected.append((tuple(x.text for x in before[start:]), Question(line.text, line.answer, support)))
    assert seen_in_windows == expected
    for e in windows:  # a window is a valid story: its supporting facts are its own statements
        assert parse_babi(format_babi([e.lines])) == [e.lines]


# -- scoring -------------------------------------------------------------------------------------------------


def replaying(task, split, batch_size, logits_of):
    """A forward that checks it is called on the split's batches in order and answers ``logits_of(batch)``."""
    batches = iter(task.split_batches(split, batch_size))

    def forward(inputs):
        batch, _ = next(batches)
        np.testing.assert_array_equal(inputs, batch.inputs)
        return logits_of(batch)

    return forward


def one_hot(targets, V):
    return 5.0 * np.eye(V)[targets]  # (T, B, V)


def test_a_perfect_forward_has_no_errors_and_a_wrong_one_errs_on_every_question():
    V = SMALL.output_size
    perfect = SMALL.per_task_errors(replaying(SMALL, "test", 5, lambda b: one_hot(b.targets, V)), batch_size=5)
    assert perfect == {1: 0.0, 5: 0.0, 8: 0.0, 15: 0.0}
    wrong = SMALL.per_task_errors(replaying(SMALL, "test", 64, lambda b: one_hot((b.targets + 1) % V, V)))
    assert wrong == {1: 1.0, 5: 1.0, 8: 1.0, 15: 1.0}
    assert summarize_errors(perfect) == (perfect, 0.0, 0) and summarize_errors(wrong).failed == 4


def test_a_question_is_wrong_if_any_of_its_answer_words_is_wrong():
    V = SMALL.output_size

    def wrong_after_the_first_word(batch):
        targets = batch.targets.copy()
        follows = (batch.mask[1:] == 1) & (batch.mask[:-1] == 1)  # an answer step right after another
        targets[1:][follows] = (targets[1:][follows] + 1) % V
        return one_hot(targets, V)

    errors = SMALL.per_task_errors(replaying(SMALL, "train", 8, wrong_after_the_first_word), "train", 8)
    questions = [q for e in SMALL.examples("train") if e.task == 8 for q in e.lines if isinstance(q, Question)]
    assert errors[8] == pytest.approx(np.mean([len(q.answer) > 1 for q in questions])) and 0 < errors[8] < 1
    assert errors[1] == errors[5] == errors[15] == 0.0
    batch = SMALL.sample(4, np.random.default_rng(0))
    per_word = SMALL.metric(wrong_after_the_first_word(batch), batch)  # the metric counts words, not questions
    scored = batch.mask.sum(axis=0)
    np.testing.assert_allclose(per_word, (scored - np.array([len(q) for q in _questions_of(batch)])) / scored)


def _questions_of(batch):
    """The answer-word runs of each sequence of a batch (from the mask alone)."""
    out = []
    for b in range(batch.mask.shape[1]):
        m = np.concatenate([[0.0], batch.mask[:, b]])
        out.append(np.flatnonzero((m[1:] == 1) & (m[:-1] == 0)))
    return out


def test_split_batches_cover_the_split_in_order_with_the_task_of_each_sequence():
    pairs = list(SMALL.split_batches("test", batch_size=9))
    assert all(isinstance(p, SplitBatch) and isinstance(p.batch, Batch) for p in pairs)
    assert [len(p.tasks) for p in pairs[:-1]] == [9] * (len(pairs) - 1) and 1 <= len(pairs[-1].tasks) <= 9
    assert np.concatenate([p.tasks for p in pairs]).tolist() == [e.task for e in SMALL.examples("test")]
    decoded = [tuple(s) for p in pairs for s in SMALL.decode(p.batch.inputs)]
    assert decoded == [expected_sequence(e.lines)[0] for e in SMALL.examples("test")]


def test_summarize_errors_counts_the_tasks_above_five_percent():
    summary = summarize_errors({1: 0.0, 2: 0.1, 3: 0.05, 4: 0.25})
    assert summary.mean == pytest.approx(0.1) and summary.failed == 2 and summary.per_task[2] == 0.1
    with pytest.raises(ValueError, match=r"errors\[2\]: expected an error rate in \[0, 1\]"):
        summarize_errors({1: 0.0, 2: float("nan")})
    with pytest.raises(TypeError, match="errors: expected a non-empty dict"):
        summarize_errors({})


# -- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, expected",
    [
        (dict(tasks=()), ValueError, "tasks: expected at least one"),
        (dict(tasks="15"), TypeError, "tasks: expected a tuple or list"),
        (dict(tasks=[21]), ValueError, "tasks: expected bAbI task numbers in 1..20, got 21"),
        (dict(tasks=[1.0]), ValueError, "tasks: expected bAbI task numbers"),
        (dict(tasks=[1, 2, 1]), ValueError, "tasks: expected each task once"),
        (dict(tasks=[1, 7]), ValueError, r"tasks: expected tasks our generator writes .* \(pass data= .*got \[7\]"),
        (dict(questions_per_task=0), ValueError, "questions_per_task"),
        (dict(questions_per_task=2.0), TypeError, "questions_per_task"),
        (dict(max_sentences=0), ValueError, "max_sentences"),
        (dict(world_seed=-1), ValueError, "world_seed"),
        (dict(family="fr"), ValueError, "family: expected one of en, en-10k"),
        (dict(data=3), TypeError, "data: expected a folder path"),
    ],
)
def test_bad_configurations_are_refused_by_name(kwargs, error, expected):
    with pytest.raises(error, match=expected):
        BabiTask(**kwargs)


def test_a_missing_data_folder_or_task_file_names_data(tmp_path):
    with pytest.raises(ValueError, match=r"data: expected a folder holding the official bAbI files .* not a directory"):
        BabiTask(data=str(tmp_path / "absent"))
    write_family(tmp_path, [1], num_questions=2, seed=0, family="en-10k")
    with pytest.raises(ValueError, match=r"data: expected the en-10k files of task 19 .*looked for qa19_\*_train.txt"):
        BabiTask(tasks=[1, 19], data=str(tmp_path))
    with pytest.raises(ValueError, match=r"data: expected the en files of task 1"):
        BabiTask(tasks=[1], data=str(tmp_path), family="en")


def test_bad_calls_are_refused_by_name():
    rng = np.random.default_rng(0)
    batch = SMALL.sample(2, rng)
    with pytest.raises(ValueError, match="level: expected None or 1"):
        SMALL.sample(2, rng, level=2)
    with pytest.raises(TypeError, match="rng"):
        SMALL.sample(2, 0)
    with pytest.raises(ValueError, match="batch_size"):
        list(SMALL.split_batches("test", 0))
    with pytest.raises(TypeError, match="forward: expected a callable"):
        SMALL.per_task_errors(np.zeros(3))
    V = SMALL.output_size
    with pytest.raises(ValueError, match=r"forward\(inputs\): expected logits of shape"):
        SMALL.per_task_errors(lambda x: np.zeros(x.shape[:2] + (V + 1,)))
    with pytest.raises(ValueError, match=r"forward\(inputs\): expected finite values"):
        SMALL.per_task_errors(lambda x: np.full(x.shape[:2] + (V,), np.nan))
    with pytest.raises(ValueError, match=r"logits: expected finite values"):
        SMALL.metric(np.full(batch.targets.shape + (V,), np.nan), batch)
    with pytest.raises(ValueError, match=rf"logits: expected shape \(T, B, {V}\)"):
        SMALL.metric(np.zeros(batch.targets.shape + (V - 1,)), batch)
    with pytest.raises(ValueError, match="inputs: expected one-hot"):
        SMALL.decode(0.5 * batch.inputs)


# -- in the registry and the trainer --------------------------------------------------------------------------


def test_the_task_is_registered_and_its_config_survives_json():
    kwargs = json.loads(json.dumps(dict(tasks=(1, 15), questions_per_task=8, max_sentences=None)))
    task = make_task("babi", **kwargs)
    assert task == BabiTask(tasks=(1, 15), questions_per_task=8, max_sentences=None) and task.tasks == (1, 15)
    assert (task.loss, task.metric_name, task.metric_target, task.level_range) == (
        "softmax_ce",
        "answer_errors",
        0.05,
        (1, 1),
    )


def test_the_task_trains_through_the_trainer(tmp_path):
    config = TrainConfig(
        model="lstm",
        task="babi",
        task_kwargs={"tasks": [1, 4], "questions_per_task": 10},
        sequences=32,
        batch_size=8,
        eval_size=8,
        eval_every=16,
        hidden_size=8,
        log_every=2,
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    summary = trainer.run()
    assert summary["metric"] == "answer_errors" and 0.0 <= summary["final_eval_answer_errors"] <= 1.0
    assert all(np.isfinite(r["loss"]) and 0.0 <= r["answer_errors"] <= 1.0 for r in trainer.records)
    assert sum("eval_answer_errors" in r for r in trainer.records) == 2
    errors = trainer.task.per_task_errors(trainer.model.forward, batch_size=32)
    assert set(errors) == {1, 4} and all(0.0 <= e <= 1.0 for e in errors.values())
