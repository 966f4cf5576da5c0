"""refmann bench footprint: SAM trains at a given N and reports the bytes of each part."""

import numpy as np
import pytest

from refmann.bench.footprint import footprint_run, format_footprint
from refmann.cli import main


def test_footprint_run_trains_and_reports_each_part():
    result = footprint_run(3_000, batch_size=2, dtype="float32", updates=2, length=3)
    parts = result["parts"]
    assert set(parts) >= {"memory", "index", "usage ring", "gradient table"}
    assert parts["memory"] == 2 * 3_000 * 32 * 4  # (B, N, W) float32
    assert parts["gradient table"] < parts["memory"] / 10  # touched rows only, not (B, N, W)
    assert len(result["update_seconds"]) == 2 and all(np.isfinite(result["losses"]))
    assert result["peak_rss_bytes"] is None or result["peak_rss_bytes"] > sum(parts.values())  # None: no /proc
    text = format_footprint(result)
    assert "| memory |" in text and "N = 3,000" in text and "KiB" in text


def test_footprint_refuses_bad_arguments():
    with pytest.raises(ValueError, match="memory_size"):
        footprint_run(0)
    with pytest.raises(ValueError, match="dtype"):
        footprint_run(100, dtype="float16")


def test_cli_footprint_quick(capsys):
    assert main(["bench", "footprint", "--sizes", "2000", "--updates", "1", "--length", "2", "--quiet"]) == 0
    assert "gradient table" in capsys.readouterr().out
