"""A cell file checked in a short-lived child process, so the caller never imports pydantic (the task_planner
keeps its memory small this way).

`python -m cobot_cell.skills.checked_cell <cell file>` runs `load_cell`, validates every step's parameters and
writes a pickle to stdout: `(cfg, params)` or the error (a CellFileError), with the log records of the check.
The types are plain dataclasses: unpickling them needs no pydantic.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from ..core.model import CellConfig
from .common import SkillParams

MODULE = "cobot_cell.skills.checked_cell"


def load_checked(path: str | Path) -> tuple[CellConfig, dict[tuple[str, str], SkillParams]]:
    """The cell and every step's validated parameters by (job, step name), as `load_cell` and `validated_params`
    give them, checked in a child process; the same CellFileError as `load_cell` for a bad file. What the check
    logs is logged here, to the same loggers."""
    code, out = _run([sys.executable, "-m", MODULE, str(path)])
    if code != 0:
        raise RuntimeError(f"checking cell file {path} failed (exit code {code}; its messages are above)")
    outcome, value, records = pickle.loads(out)
    for record in records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
    if outcome == "error":
        raise value
    checked: tuple[CellConfig, dict[tuple[str, str], SkillParams]] = value
    return checked


def _run(args: list[str]) -> tuple[int, bytes]:
    """Run a child process, its stderr shared with this one; (exit code, what it wrote to stdout). (os.posix_spawn
    rather than subprocess, whose imports cost the planner ~0.6 MB.)"""
    read, write = os.pipe()
    try:
        pid = os.posix_spawn(args[0], args, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, write, 1)])
    finally:
        os.close(write)
    with open(read, "rb") as pipe:
        out = pipe.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out


class _Records(logging.Handler):
    """Keeps log records, their messages formatted, for the parent process."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def _travels(exc: Exception) -> bool:
    """The exception survives a pickle round trip (else it is left to the traceback on stderr)."""
    try:
        return type(pickle.loads(pickle.dumps(exc))) is type(exc)
    except Exception:  # noqa: BLE001 - whatever pickling raises, the exception does not travel
        return False


def main(argv: list[str] | None = None) -> int:
    """Check the cell file named in argv and write the pickled outcome to stdout."""
    from . import load_cell, validated_params

    (path,) = sys.argv[1:] if argv is None else argv
    out, sys.stdout = sys.stdout.buffer, sys.stderr  # stdout carries the pickle only
    handler = _Records()
    root = logging.getLogger("cobot_cell")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    root.propagate = False
    outcome: tuple[Any, ...]
    try:
        cfg = load_cell(path)
        outcome = ("ok", (cfg, validated_params(cfg)))
    except Exception as exc:  # CellFileError, or whatever else load_cell raises: raised again in the caller
        if not _travels(exc):
            raise
        outcome = ("error", exc)
    out.write(pickle.dumps((*outcome, handler.records), protocol=pickle.HIGHEST_PROTOCOL))
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
