"""What the user of ``casty demo`` sees and does at the terminal: the progress lines, the
demo process's own log records, and Ctrl-C / SIGTERM.

`Progress` draws a bar on a terminal (a line per 10 % otherwise). `ClientLogs` sends the
demo process's log records (its `ClusterClient`'s) to a file in the demo's folder, and the
warnings and errors to stderr too, except the warnings about the node the demo killed on
purpose. `Interrupts` turns SIGINT and SIGTERM into a cancelled run, then a fast cleanup.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from casty.abc import Address
    from casty.demo.cluster import DemoCluster

__all__ = ["ClientLogs", "Interrupts", "Progress", "handled_signals"]

_DEFAULT_HANDLERS: dict[signal.Signals, object] = {
    signal.SIGINT: signal.default_int_handler,
    signal.SIGTERM: signal.SIG_DFL,
}


def handled_signals() -> list[signal.Signals]:
    """SIGINT and SIGTERM, less those the process was started with ignored (a background
    job's SIGINT stays ignored). Call it before `asyncio.run`, which replaces SIGINT's."""
    return [sig for sig, default in _DEFAULT_HANDLERS.items() if signal.getsignal(sig) is default]


class Progress:
    """A one-line progress bar on ``stream`` when it is a terminal; a line per 10 % otherwise.

    Args:
        stream: where to write (stderr).
        total: the tasks that make 100 %.
    """

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = total
        self._tty = stream.isatty()
        self._tenth = -1
        self._note = ""
        self._on_bar = False  # the cursor is at the end of a drawn bar

    def say(self, text: str) -> None:
        """Print ``text`` on a line of its own (below the bar)."""
        self._end_line()
        print(text, file=self._stream, flush=True)

    def note(self, text: str) -> None:
        """Show ``text`` after the bar from now on (terminals only)."""
        self._note = text

    def update(self, done: int, rate: float) -> None:
        """Show ``done`` tasks acknowledged at ``rate`` tasks/s."""
        fraction = min(done / self._total, 1.0)
        if self._tty:
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            line = f"\r[{bar}] {done:,}/{self._total:,} acknowledged  {rate:,.0f} tasks/s"
            note = f"  {self._note}" if self._note else ""
            self._stream.write(f"{line}{note}\x1b[K")
            self._stream.flush()
            self._on_bar = True
        elif int(fraction * 10) > self._tenth:
            self._tenth = int(fraction * 10)
            print(f"{done:,}/{self._total:,} acknowledged", file=self._stream, flush=True)

    def _end_line(self) -> None:
        if self._on_bar:
            self._stream.write("\n")
            self._on_bar = False


class Interrupts:
    """SIGINT and SIGTERM during the demo: the first cancels the run (which stops the load
    and closes the client quietly); one during the cleanup SIGKILLs the nodes at once.

    Args:
        cluster: the nodes to kill.
        signals: the signals to handle (those the process was started with ignored stay so).
        logs: quieted to errors once interrupted (the teardown's warnings are expected).
    """

    def __init__(
        self, cluster: DemoCluster, signals: list[signal.Signals], logs: ClientLogs
    ) -> None:
        self.received: signal.Signals | None = None
        self._cluster = cluster
        self._logs = logs
        self._task = asyncio.current_task()
        self._running = True
        for sig in signals:
            asyncio.get_running_loop().add_signal_handler(sig, self._on_signal, sig)

    def cleaning_up(self) -> None:
        """From now on a signal kills the nodes instead of cancelling the run."""
        self._running = False

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.received is None:
            self.received = sig
            self._logs.errors_only()
        if self._running and self._task is not None:
            self._running = False
            self._task.cancel()
        else:
            for n in range(self._cluster.size):
                self._cluster.kill(n)


class ClientLogs:
    """The demo process's log records (its `ClusterClient`): all of them to ``path`` (in the
    kept folder), warnings and errors to stderr too, except the warnings about the node the
    demo killed on purpose (its connection resets, failed reconnects).

    Args:
        path: the log file, created at the first record.
    """

    def __init__(self, path: Path) -> None:
        self._expected: re.Pattern[str] | None = None
        self._file = logging.FileHandler(path, delay=True)
        self._file.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        self._console = logging.StreamHandler(sys.stderr)
        self._console.setLevel(logging.WARNING)
        self._console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._console.addFilter(self._shown)
        self._logger = logging.getLogger("casty")
        self._level = self._logger.level
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self._file)
        self._logger.addHandler(self._console)

    def expect_loss_of(self, node: Address) -> None:
        """Keep warnings that name ``node`` off stderr (it was killed on purpose)."""
        self._expected = re.compile(re.escape(str(node)) + r"(?!\d)")

    def errors_only(self) -> None:
        """Show only errors on stderr from now on."""
        self._console.setLevel(logging.ERROR)

    def close(self) -> None:
        """Detach from the ``casty`` logger and close ``path``."""
        for handler in (self._file, self._console):
            self._logger.removeHandler(handler)
            handler.close()
        self._logger.setLevel(self._level)

    def _shown(self, record: logging.LogRecord) -> bool:
        if self._expected is None or record.levelno >= logging.ERROR:
            return True
        return self._expected.search(record.getMessage()) is None
