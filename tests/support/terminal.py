"""A real terminal for tests: a command run in a tmux pane of a fixed size, read back as the screen shows it.

tmux is the terminal: it interprets what the command writes (carriage returns, erase-line,
colours, line wrapping) exactly as a person's terminal would, and ``capture-pane`` gives the
resulting screen and its scrollback.  Each :class:`Terminal` has its own tmux server (a socket
in a temporary folder), so tests never see each other's panes.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import pytest

EXIT_MARK = "[exit "


def tmux() -> str:
    found = shutil.which("tmux")
    if found is None:
        pytest.fail("tmux is needed for the terminal tests (Debian: apt-get install tmux; scripts/bootstrap.sh --test)")
    return found


class Terminal:
    """One tmux pane of *columns* x *rows* running one command; the pane stays after the command ends."""

    def __init__(self, columns: int = 100, rows: int = 40) -> None:
        self.columns = columns
        self.rows = rows
        self.folder = Path(tempfile.mkdtemp(prefix="asrbatch-tmux-", dir="/tmp"))
        self.socket = self.folder / "s"
        self.started = False

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([tmux(), "-S", str(self.socket), "-f", "/dev/null", *args], capture_output=True,
                              text=True, timeout=30, check=check)

    def start(self, command: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> None:
        """Run *command* in the pane with exactly *env* (plus the terminal's TERM), in *cwd*."""
        assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        # The shell outlives the command (Ctrl-C goes to both: the trap keeps the shell) and then
        # keeps the pane open, so that the screen can be read after the command ended.
        script = (f"trap true INT; cd {shlex.quote(str(cwd))} && env -i TERM=\"$TERM\" {assignments} "
                  f"{shlex.join(command)}; echo \"{EXIT_MARK}$?]\"; exec sleep 3600")
        self._tmux("new-session", "-d", "-x", str(self.columns), "-y", str(self.rows), "-s", "t", "sh", "-c", script)
        self._tmux("set-option", "-t", "t", "history-limit", "5000")
        self.started = True

    def screen(self, *, escapes: bool = False) -> str:
        """Everything the pane shows, scrollback included; wrapped lines joined; with *escapes*,
        the colour codes as the terminal holds them."""
        args = ["capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "t"]
        if escapes:
            args.append("-e")
        return self._tmux(*args).stdout

    def lines(self) -> list[str]:
        """The screen's lines, right-trimmed, without the trailing empty ones."""
        lines = [line.rstrip() for line in self.screen().splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def wait_for(self, text: str, *, timeout: float = 60.0) -> str:
        """Poll the screen until it shows *text*; return the screen."""
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if text in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"the terminal did not show {text!r} within {timeout:g} s; it shows:\n{shown}")
            time.sleep(0.05)

    def exit_code(self, *, timeout: float = 120.0) -> int:
        """Wait for the command to end; its exit status."""
        shown = self.wait_for(EXIT_MARK, timeout=timeout)
        return int(shown[shown.rindex(EXIT_MARK) + len(EXIT_MARK):].split("]", 1)[0])

    def send(self, *keys: str) -> None:
        """Type *keys* (tmux key names: ``C-c``, ``Enter``)."""
        self._tmux("send-keys", "-t", "t", *keys)

    def close(self) -> None:
        if self.started:
            self._tmux("kill-server", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
