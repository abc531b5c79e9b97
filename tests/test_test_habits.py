"""The tests' own habit (issue 12): they wait on a condition with a deadline
(`tests.waiting`), never sleep to let something happen and never assert on elapsed wall
time. A sleep that paces a peer (a camera's frame rate, a PLC's scan cycle) says so in a
comment on its line or the line above; a pacing test's lower bound says so too."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SLEEP = re.compile(r"\b(time|asyncio)\.sleep\(")
ELAPSED = re.compile(r"\bassert\b.*\b(monotonic|monotonic_ns|perf_counter|time|time_ns)\(\)\s*-")


def lines() -> list[tuple[str, int, str, str]]:
    """(file, line number, line, the line above) of every test module but the helper."""
    out = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name in ("waiting.py", Path(__file__).name):  # the poll loop itself; this file's examples
            continue
        text = path.read_text().splitlines()
        out += [(str(path.relative_to(TESTS)), i + 1, line, text[i - 1] if i else "") for i, line in enumerate(text)]
    return out


def test_every_sleep_left_in_the_tests_says_what_it_paces():
    bare = [f"{name}:{no}: {line.strip()}" for name, no, line, above in lines()
            if SLEEP.search(line) and "#" not in line and not above.strip().startswith("#")]
    assert not bare, "sleeps without a reason (wait with tests.waiting.wait_until instead):\n" + "\n".join(bare)


def test_no_test_asserts_on_elapsed_wall_time_but_a_pacing_lower_bound():
    timed = [f"{name}:{no}: {line.strip()}" for name, no, line, _ in lines()
             if ELAPSED.search(line) and "lower bound" not in line]
    assert not timed, "assertions on elapsed time:\n" + "\n".join(timed)


def test_the_checks_see_what_they_look_for():
    assert SLEEP.search("    time.sleep(0.3)") and SLEEP.search("await asyncio.sleep(1)")
    assert ELAPSED.search("assert time.monotonic() - t0 < 5") and not ELAPSED.search("deadline = time.monotonic() + 5")
