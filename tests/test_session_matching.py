"""The session's linear-time end-of-text checks decide exactly as the documented patterns (DIALOGUES.md section 1),
on any text; and they stay fast on hostile text where those patterns backtrack."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from segtui.asyncos.session import (
    PAGER_MARKER,
    TAIL_CHARS,
    hostname_from_label,
    pager_at_end,
    password_at_end,
    prompt_label,
    question_default,
)

# Reference patterns, as documented: correct but superlinear on hostile text, so used on short text only.
PROMPT_REF = re.compile(r"(?m)^(\((?:Cluster|Group|Machine) [^)\n]+\)|[A-Za-z0-9._-]+)> \Z")
QUESTION_REF = re.compile(r"\[([^\]\n]*)\]> \Z")
PASSWORD_REF = re.compile(r"(?i)pass(?:word|phrase)[^\n]*:\s*\Z")
PAGER_REF = re.compile(r"-Press Any Key For More-\s*\Z")

PIECES = st.sampled_from(
    [
        "a", "Z", "1", ".", "-", "_", " ", "  ", "\n", "\t", "[", "]", "(", ")", ">", "> ", "]> ", ":", "?",
        "[Y]> ", "[]> ", "Cluster ", "Group ", "Machine ", "(Cluster c1)", "(Machine gw7.example.net)> ",
        "esa1.example.com> ", "password", "Passphrase", "pass", "word", "Enter the password:", PAGER_MARKER,
    ]
)  # fmt: skip
TEXT = st.lists(PIECES, max_size=30).map("".join)


def _last_line(text: str) -> str:
    return text[text.rfind("\n") + 1 :]


@settings(max_examples=2000)
@given(TEXT)
def test_the_checks_agree_with_the_documented_patterns(text: str) -> None:
    ref_prompt = PROMPT_REF.search(text)
    label = prompt_label(_last_line(text))
    assert label == (ref_prompt.group(1) if ref_prompt else None)
    if label is None:  # a question is never the main prompt
        assert (question_default(_last_line(text)) is not None) == (QUESTION_REF.search(text) is not None)
    assert password_at_end(text) == (PASSWORD_REF.search(text) is not None)
    assert pager_at_end(text) == (PAGER_REF.search(text) is not None)


def test_hostnames_from_prompt_labels() -> None:
    assert hostname_from_label("gw7.mail.example.net") == "gw7.mail.example.net"
    assert hostname_from_label("(Machine gw7.mail.example.net)") == "gw7.mail.example.net"
    assert hostname_from_label("(Cluster mailcluster)") is None
    assert hostname_from_label("(Group east)") is None
    assert hostname_from_label("(Machine bad name;rm)") is None


def test_the_checks_are_fast_on_hostile_tails() -> None:
    for unit in ("[", "password ", "pass", "(Cluster ", "a", PAGER_MARKER[:-1]):
        tail = (unit * (TAIL_CHARS // len(unit) + 1))[-TAIL_CHARS:]
        t0 = time.perf_counter()
        for _ in range(200):
            line = _last_line(tail)
            prompt_label(line), question_default(line), password_at_end(tail), pager_at_end(tail)
        assert time.perf_counter() - t0 < 0.5, unit  # 200 chunks' worth; the old patterns took seconds each
