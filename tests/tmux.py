"""A terminal a person would use: a tmux session to type into and read from."""

from __future__ import annotations

import os
import subprocess
import time


class TmuxSession:
    def __init__(self, name: str, command: str, width: int = 170, height: int = 45) -> None:
        self.name = f"{name}-{os.getpid()}"
        # The caller's COLUMNS/LINES (pytest's, a CI runner's) would override the pane's size in the app.
        command = f"unset COLUMNS LINES; {command}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), command], check=True
        )

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The screen once `text` is on it (capture-pane drops trailing spaces: match without them)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)
