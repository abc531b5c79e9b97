"""Log output of the daemon: plain text lines or JSON lines, chosen by `logging.format`.

Owns the root logger's one handler (stderr, which systemd sends to the journal and
Docker to its log driver) and the per-frame context convention: a record about one
frame passes `extra={"camera_id": ..., "frame_id": ...}` (`frame_id` is the per-camera
capture sequence number, the verdict's `frame_id`). JSON lines carry them as fields;
plain lines end with `[camera=... frame_id=...]`. Per-frame records are warnings or
errors, and rate-limited where they are raised: at INFO a healthy line logs nothing
per frame. JSON formatting is python-json-logger's; this module only picks fields.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from pipeline.config.models import LoggingConfig

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FRAME_FIELDS = ("camera_id", "frame_id")


class PlainFormatter(logging.Formatter):
    """The classic one-line format, plus the frame context when a record has one."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        # the frame context comes as logging's `extra=` attributes, on some records only
        camera = getattr(record, "camera_id", None)
        if camera is None:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the context
        return f"{head} [camera={camera} frame_id={getattr(record, 'frame_id', '?')}]{sep}{tail}"


def json_formatter() -> logging.Formatter:
    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", timestamp=False,
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})


def configure_logging(config: LoggingConfig, level: str | None = None, stream: TextIO | None = None) -> None:
    """Replace the root handler; `level` (the --log-level flag) overrides the config's."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if config.format == "json" else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or config.level)
