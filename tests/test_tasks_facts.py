"""The facts task: a grammar and a table of facts, token batches, the fact-recall metric."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.tasks import Batch, Facts, make_task

SMALL = dict(num_subjects=8, num_relations=2, num_objects=5, num_words=6, branching=2, length=20)


@given(seed=st.integers(0, 2**16), B=st.integers(1, 5), rate=st.sampled_from([0.0, 0.3, 1.0]))
def test_every_sentence_is_a_fact_of_the_world_or_a_walk_of_its_grammar(seed, B, rate):
    task = Facts(fact_rate=rate, **SMALL)
    batch = task.sample(B, np.random.default_rng(seed))
    assert batch.inputs.shape == batch.targets.shape == batch.mask.shape == (20, B)
    assert batch.inputs.dtype == batch.targets.dtype == np.int64 and np.all(batch.mask == 1)
    np.testing.assert_array_equal(batch.inputs[1:], batch.targets[:-1])  # targets are the next tokens
    for b in range(B):
        seq = np.append(batch.inputs[:, b], batch.targets[-1, b])
        sentences = np.split(seq, np.flatnonzero(seq == 0) + 1)
        assert task.first_subject <= sentences[0][0] < task.first_relation  # the first sentence is a fact
        for sentence in sentences[:-1]:  # the last one may be cut
            body = sentence[:-1]
            if task.first_subject <= body[0] < task.first_relation:
                s, r = body[0] - task.first_subject, body[1] - task.first_relation
                assert body.tolist() == list(task.fact_tokens(s, r))
            else:
                assert rate < 1.0 and 2 <= len(body) <= 6
                words = body - 1
                for a, w in zip(words[:-1], words[1:]):
                    assert w in task.successors[a]


def test_the_world_is_fixed_by_world_seed_and_the_batch_by_rng():
    a, b, c = Facts(**SMALL), Facts(**SMALL), Facts(world_seed=1, **SMALL)
    np.testing.assert_array_equal(a.objects, b.objects)
    assert not np.array_equal(a.objects, c.objects)
    x1, x2 = a.sample(4, np.random.default_rng(0)), b.sample(4, np.random.default_rng(0))
    np.testing.assert_array_equal(x1.inputs, x2.inputs)
    assert a.input_size == a.output_size == 1 + 6 + 8 + 2 + 5 and a.num_facts == 16
    assert make_task("facts", **SMALL) == a


def test_fact_recall_scores_the_object_positions_only():
    task = Facts(**SMALL)
    batch = task.sample(6, np.random.default_rng(1))
    f = task.fact_positions(batch)
    assert np.all(f.sum(axis=0) >= 1)  # every sequence asks at least one fact
    perfect = np.eye(task.output_size)[batch.targets] * 5.0  # (T, B, V) the right token everywhere
    np.testing.assert_array_equal(task.metric(perfect, batch), 0.0)
    wrong_facts = perfect.copy()
    t, b = np.nonzero(f)
    wrong_facts[t, b] = np.roll(wrong_facts[t, b], 1, axis=-1)  # every object wrong, the rest right
    np.testing.assert_array_equal(task.metric(wrong_facts, batch), 1.0)
    wrong_rest = np.where(f[..., None], perfect, np.roll(perfect, 1, axis=-1))  # only the objects right
    np.testing.assert_array_equal(task.metric(wrong_rest, batch), 0.0)
    assert task.loss == "softmax_ce" and task.tokens


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(num_subjects=0), ValueError, "num_subjects: expected an integer >= 1"),
        (dict(length=3), ValueError, "length: expected an integer >= 4"),
        (dict(branching=7), ValueError, "branching: expected at most num_words = 6"),
        (dict(fact_rate=1.5), ValueError, r"fact_rate: expected a number in \[0, 1\]"),
        (dict(fact_rate=True), ValueError, "fact_rate"),
        (dict(num_words=2.0), TypeError, "num_words: expected an integer"),
    ],
)
def test_bad_configurations_are_refused_naming_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        Facts(**(SMALL | kwargs))


def test_bad_calls_are_refused():
    task = Facts(**SMALL)
    with pytest.raises(ValueError, match="level: expected None or 1"):
        task.sample(2, np.random.default_rng(0), level=2)
    batch = task.sample(2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="logits: expected shape"):
        task.metric(np.zeros((20, 2, 3)), batch)
    with pytest.raises(TypeError, match="batch: expected a refmann.tasks.Batch"):
        task.metric(np.zeros((20, 2, task.output_size)), tuple(batch))
    assert isinstance(batch, Batch)
