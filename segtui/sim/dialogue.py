"""The simulated CLI's one way to print and to ask: paged output, questions with defaults, numbered lists, menus."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from segtui.sim.model import Printing
from segtui.sim.terminal import Terminal

PAGER = "-Press Any Key For More-"
MENU_TITLE = "Choose the operation you want to perform:"


class Dialogue:
    """Everything a command prints goes through here, so the pager can stop anywhere, as AsyncOS's does:
    after `page_lines` lines written since the last answer, also inside a numbered list that ends in a question.
    """

    def __init__(self, term: Terminal, printing: Printing, *, paged: bool) -> None:
        self.term = term
        self.printing = printing
        self.paged = paged
        self._lines = 0  # lines written since the last input

    async def line(self, text: str = "") -> None:
        # Lines go out together up to the pager (a PTY's output reaches sshd in chunks, not a packet per line).
        out: list[str] = []
        for part in text.split("\n"):
            if self.paged and self._lines >= self.printing.page_lines:
                self.term.write("".join(out) + PAGER)
                out.clear()
                await self.term.key()
                self.term.write("\r\x1b[K" if self.printing.erase_csi else "\r" + " " * len(PAGER) + "\r")
                self._lines = 0
            out.append(part + "\n")
            self._lines += 1
        self.term.write("".join(out))

    async def lines(self, *texts: str) -> None:
        if texts:
            await self.line("\n".join(texts))

    def raw(self, text: str) -> None:
        """Progress output while a long job runs: streamed as it comes, never paged."""
        self.term.write(text)

    async def read(self) -> str:
        text = await self.term.readline()
        self._lines = 0
        return text

    async def ask(
        self,
        question: Sequence[str],
        default: str,
        *,
        valid: Callable[[str], bool] | None = None,
        complaint: str = "",
    ) -> str:
        """The question's lines, then `[default]> `; asked again until the answer is valid; empty takes the default."""
        await self.lines(*question)
        while True:
            self.term.write(f"[{default}]> ")
            answer = (await self.read()).strip() or default
            if valid is None or valid(answer):
                return answer
            await self.line(complaint)

    async def ask_inline(self, question: str, default: str) -> str:
        """`question [default]> ` on one line (the question may start with blank lines)."""
        *before, last = question.split("\n")
        await self.lines(*before)
        self.term.write(f"{last} [{default}]> ")
        return (await self.read()).strip() or default

    async def confirm(self, question: str, default: str) -> bool:
        return (await self.ask_inline(question, default)).upper().startswith("Y")

    async def choose(
        self,
        header: Sequence[str],
        items: Sequence[str],
        default: str,
        *,
        multi: bool = False,
        allow_empty: bool = False,
    ) -> list[int]:
        """A numbered list that ends in a question: the 1-based picks (comma-separated when `multi`)."""
        await self.lines(*header)
        for i, item in enumerate(items, start=1):
            await self.line(f"{i}. {item}")
        n = len(items)

        def valid(answer: str) -> bool:
            if not answer:
                return allow_empty
            parts = answer.split(",") if multi else [answer]
            return all(p.strip().isdigit() and 1 <= int(p) <= n for p in parts)

        answer = await self.ask((), default, valid=valid, complaint=f"You must enter a number from 1 to {n}.")
        return [int(p) for p in answer.split(",") if p.strip()]

    async def menu(
        self, items: Sequence[tuple[str, str]], title: str = "Choose the operation you want to perform:"
    ) -> str | None:
        """`- OP - text` lines and `[]> `: the operation chosen, or None for an empty answer (leave)."""
        await self.lines("", title)
        for op, text in items:
            await self.line(f"- {op} - {text}")
        names = {op for op, _ in items}
        while True:
            self.term.write("[]> ")
            op = (await self.read()).strip().upper()
            if not op:
                return None
            if op in names:
                return op
            await self.line("Unknown option")
