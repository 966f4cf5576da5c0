"""The SAM model's boundary: bad options are refused naming the option."""

import numpy as np
import pytest

from refmann import models


def test_sam_refuses_bad_options():
    kw = dict(input_size=2, output_size=2, memory_size=5, word_size=3, num_heads=1, hidden_size=3)
    with pytest.raises(ValueError, match=r"k: expected 1 <= k <= memory_size = 5, got 6"):
        models.SAM(k=6, **kw)
    with pytest.raises(ValueError, match="index: expected one of"):
        models.SAM(index="kdtree-please", **kw)
    with pytest.raises(ValueError, match="bptt: expected one of"):
        models.SAM(bptt="none", **kw)
    with pytest.raises(ValueError, match="memory_init: 'learned' is not available for SAM"):
        models.SAM(memory_init="learned", **kw)
    with pytest.raises(ValueError, match="num_bits: expected at most 24"):
        models.SAM(index="lsh", index_kwargs={"num_bits": 30}, **kw).forward(np.zeros((1, 1, 2)))
