"""The docs name the tests that check each derivation; every named test file and test function exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = (
    sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "docs" / "derivations").glob("*.md")) + [ROOT / "README.md"]
)
DEFINED = {m for path in (ROOT / "tests").glob("*.py") for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_test_a_page_names_exists(page):
    text = page.read_text()
    for name in re.findall(r"`(test_\w+)`", text):
        assert name in DEFINED, f"{page.name} names {name}, which no test file defines"
    for path in re.findall(r"`(tests/test_\w+\.py)", text):
        assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"
