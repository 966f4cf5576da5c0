"""Plant known bugs one at a time in a scratch copy and check that the test suite catches each.

Usage (from the project root; takes a few minutes)::

    python tests/planted_bugs.py              # every bug, the whole suite (stops at the first failure)
    python tests/planted_bugs.py sharpen      # the bugs whose name contains "sharpen"
    python tests/planted_bugs.py ring tests/test_memory_ring.py tests/test_kernels_ring.py   # narrower

For each bug the script exports the committed tree (``git archive HEAD``) into a temporary folder,
replaces one snippet of source (the replacement must match exactly once, so a stale entry fails
loudly instead of planting nothing), runs ``CI=true python -m pytest -x -q -n 2 tests/`` there with
that copy first on ``PYTHONPATH``, and reports whether the suite failed (caught) and which test
failed first. The suite is never run against the planted bug in the working tree.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Bug(NamedTuple):
    name: str
    path: str  # file to change, relative to the project root
    old: str  # exact snippet (must occur once)
    new: str


BUGS = [
    Bug(
        "float32-only wrong backward (dense_read's weight gradient off by 1% in float32)",
        "refmann/ops/memory.py",
        "    dweights = dreads @ cache.memory.transpose(0, 2, 1)  # (B, H, N)\n    return dmemory, dweights",
        "    dweights = dreads @ cache.memory.transpose(0, 2, 1)  # (B, H, N)\n"
        "    if dreads.dtype == np.float32:\n        dweights = dweights * np.float32(1.01)\n"
        "    return dmemory, dweights",
    ),
    Bug(
        "sharpen's backward without its gamma factor",
        "refmann/ops/addressing.py",
        "dweights = delta * g * scaled ** (g - 1.0) / (wmax * total)",
        "dweights = delta * scaled ** (g - 1.0) / (wmax * total)",
    ),
    Bug(
        "LRA write: the memory gradient with the wrong sign",
        "refmann/ops/memory.py",
        "    dmemory = dnew * keep\n",
        "    dmemory = -dnew * keep\n",
    ),
    Bug(
        "LRA write: the write weights' gradient with the wrong sign",
        "refmann/ops/memory.py",
        "    dweights = add @ dnew.transpose(0, 2, 1)  # (B, H, N)\n    dadd = weights @ dnew",
        "    dweights = -(add @ dnew.transpose(0, 2, 1))  # (B, H, N)\n    dadd = weights @ dnew",
    ),
    Bug(
        "LRA write: the write words' gradient with the wrong sign",
        "refmann/ops/memory.py",
        "    dadd = weights @ dnew  # (B, H, W)\n    return dmemory, dweights, dadd\n\n\n# -- registry",
        "    dadd = -(weights @ dnew)  # (B, H, W)\n    return dmemory, dweights, dadd\n\n\n# -- registry",
    ),
    Bug(
        "ring off-by-one: a touch skips the last slot of each list",
        "refmann/kernels/ring.py",
        "    B, J = slots.shape\n    for b in range(B):\n        for j in range(J):\n            s = slots[b, j]\n            if s < 0:\n"
        "                continue\n            j_prev[b, j] = prv[b, s]",
        "    B, J = slots.shape\n    for b in range(B):\n        for j in range(J - 1):\n            s = slots[b, j]\n"
        "            if s < 0:\n                continue\n            j_prev[b, j] = prv[b, s]",
    ),
    Bug(
        "ring off-by-one: an undo leaves the first move of each list in place",
        "refmann/kernels/ring.py",
        "        for j in range(J - 1, -1, -1):\n            s = slots[b, j]",
        "        for j in range(J - 1, 0, -1):\n            s = slots[b, j]",
    ),
    Bug(
        "resume forgets the curriculum level (the saved curriculum is not loaded)",
        "refmann/train/trainer.py",
        "            try:\n                curriculum.load_state_dict(saved_curriculum)\n",
        "            try:\n                pass  # curriculum.load_state_dict(saved_curriculum)\n",
    ),
    Bug(
        "LSH tie-break reversed (equal scores: the higher row index first)",
        "refmann/kernels/lsh.py",
        "(score[m] == score[best] and cand[m] < cand[best])",
        "(score[m] == score[best] and cand[m] > cand[best])",
    ),
    Bug(
        "wrong LSH probing order (the bit of largest margin flipped first)",
        "refmann/kernels/lsh.py",
        "                        if margin[j] < margin[best]:\n                            best = j\n                    margin[best] = np.inf",
        "                        if margin[j] > margin[best] and margin[j] < np.inf:\n                            best = j\n"
        "                    margin[best] = np.inf",
    ),
]


def _export(dest: Path) -> None:
    tar = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")


def plant_and_run(bug: Bug, tests: list[str] | None = None) -> tuple[bool, str]:
    """(caught, first failing test or the tail of the output); ``tests`` narrows the run (default: all)."""
    with tempfile.TemporaryDirectory(prefix="refmann-bug-") as tmp:
        tmp = Path(tmp)
        _export(tmp)
        path = tmp / bug.path
        text = path.read_text()
        if text.count(bug.old) != 1:
            raise SystemExit(f"{bug.name}: the snippet occurs {text.count(bug.old)} times in {bug.path}; update BUGS")
        path.write_text(text.replace(bug.old, bug.new))
        env = dict(os.environ, CI="true", PYTHONPATH=str(tmp))
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-n", "2", "-p", "no:cacheprovider", *(tests or ["tests/"])],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED ")]
        return run.returncode != 0, (failed[0][7:] if failed else run.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    tests = [a for a in argv if a.startswith("tests/")]  # e.g. tests/test_float32.py: a quicker, narrower run
    words = [a for a in argv if not a.startswith("tests/")]
    chosen = [b for b in BUGS if not words or any(a in b.name for a in words)]
    missed = 0
    for bug in chosen:
        caught, detail = plant_and_run(bug, tests)
        missed += not caught
        print(f"{'caught' if caught else 'MISSED'}  {bug.name}\n        {detail}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
