"""Failed-part archive: evidence of every FAIL/ERROR frame, written off the hot path.

Owns a directory tree, one background writer thread, a bounded queue and a disk quota.
It is a `VerdictSink` whose file the message names (`EvidenceStore`): the publish
thread calls `claim(job)` just before the send; when the outcome is one to keep and the
queue has room, the file name is decided there (a string, nothing touches the disk) and
the returned job carries it in `extra["archive_path"]`, so the verdict message names the
file. Right after the send, `verdict_published` queues the job as it was published
(late flag included) without waiting. A full queue skips the frame (counted, logged now
and then): the archive never blocks or fails the pipeline.

Per frame, next to each other under `<path>/<camera>/<YYYYMMDD>/`:
  `<stem>.png`            the raw image, lossless (the path the verdict names)
  `<stem>.annotated.jpg`  boxes, classes, scores and reasons drawn (when an annotator is set)
  `<stem>.json`           provenance: camera, frame id, part id, times, verdict, reasons,
                          detections, model file and SHA-256, config SHA-256, backend
Files are written to a temporary name and renamed, so a reader never sees half a file.
A full disk (ENOSPC/EDQUOT) disables the archive with one warning: frames are no longer
queued or named, the pipeline goes on unaffected, and health says `archive disabled`
(`on_change`). Every RECHECK_S the writer looks at the free space; once twice the frame
that failed fits again, the archive re-enables itself with one line. The quota is
bounded at start by what the disk can hold (90% of free space plus the tree's own size).
When the tree exceeds the quota, whole frames are removed oldest first (the newest
frame is always kept). Existing frames are counted at start-up, so the quota holds
across restarts. Sources hand each frame a fresh image array, so holding a reference
until it is written is safe.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from pipeline.config.models import ArchiveConfig, PipelineConfig
from pipeline.core.errors import PipelineError
from pipeline.core.messages import Job, PublishedVerdict
from pipeline.core.protocol import iso_utc

log = logging.getLogger(__name__)

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
RECHECK_S = 2.0  # while disabled: how often the writer looks for free space again
Annotator = Callable[[np.ndarray, Job, tuple[str, ...]], np.ndarray]
SUFFIXES = (".png", ".annotated.jpg", ".json")


class ArchiveError(PipelineError):
    """The archive directory cannot be used (message names it)."""


class FailedPartArchive:
    def __init__(self, root: Path, quota_bytes: int, max_queue: int, save: set[str], class_names: tuple[str, ...],
                 provenance: dict, annotate: Annotator | None = None, jpeg_quality: int = 90):
        self.root = root
        self.quota_bytes = quota_bytes
        self.save = save
        self.class_names = class_names
        self.provenance = dict(provenance)  # model/config identity; `config_changed` updates it
        self.annotate = annotate
        self.jpeg_quality = jpeg_quality
        self._queue: queue.Queue[tuple[Path, Job]] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self._frames: deque[tuple[Path, int]] = deque()  # (stem, bytes), oldest first
        self.saved = self.skipped = self.errors = self.evicted = self.bytes = 0
        self.disabled = False  # set by the writer when the disk is full, cleared when space returns
        # Told "" when the archive works and why not when it does not (health, e.g. Telemetry).
        self.on_change: Callable[[str], None] = lambda problem: None
        self._attempt_bytes = 0  # size of the frame being written: what must fit to resume
        self._next_check = 0.0

    @classmethod
    def from_config(cls, cfg: ArchiveConfig, config: PipelineConfig, class_names: tuple[str, ...],
                    annotate: Annotator | None = None) -> "FailedPartArchive":
        check_writable(cfg.path)
        model = config.model
        provenance = {"model_path": model.location, "model_sha256": file_sha256(model.path) if model.path else None,
                      "config_sha256": config_sha256(config)}
        return cls(cfg.path, int(cfg.quota_mb * 1024 * 1024), cfg.max_queue, set(cfg.save), class_names,
                   provenance, annotate, cfg.jpeg_quality)

    # ------------------------------------------------------------ publish-thread side
    def claim(self, job: Job) -> Job:
        """Before the send: `job` naming the file it will be written to, when its outcome is
        archived and the queue has room for it. Never blocks, never raises."""
        if self.disabled or job.verdict is None or job.verdict.outcome.value not in self.save:
            return job
        if self._queue.full():  # the publish thread is the only producer: room now is room at the put
            self._skip(job)
            return job
        try:
            stem = self._stem(job)
        except Exception:  # noqa: BLE001 - the archive must never cost a verdict
            log.exception("archive: cannot name a frame")
            return job
        name = f"{stem}.png" if job.frame.image is not None else f"{stem}.json"
        return replace(job, extra={**job.extra, "archive_path": name})

    def verdict_published(self, published: PublishedVerdict) -> None:
        """After the send: queue the write of a claimed job, as it was published."""
        name = published.job.extra.get("archive_path")
        if name is None:
            return
        try:
            self._queue.put_nowait((Path(name).with_suffix(""), published.job))
        except queue.Full:
            self._skip(published.job)

    def _skip(self, job: Job) -> None:
        self.skipped += 1
        if self.skipped == 1 or self.skipped % 100 == 0:
            log.warning("archive queue full: frame not archived (%d skipped so far)", self.skipped,
                        extra={"camera_id": job.frame.camera_id, "frame_id": job.frame.frame_id})

    def _stem(self, job: Job) -> Path:
        f = job.frame
        stamp = iso_utc(f.t_wall_ns)  # 2024-05-01T12:00:00.123456Z
        day, clock = stamp[:10].replace("-", ""), stamp[11:23].replace(":", "").replace(".", "")
        return self.root / f.camera_id / day / f"{f.camera_id}_{day}T{clock}_f{f.frame_id:09d}_{job.verdict.outcome.value}"

    def config_changed(self, config: PipelineConfig) -> None:
        self.provenance = {**self.provenance, "config_sha256": config_sha256(config)}

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._frames, self.bytes = scan(self.root)
        self._bound_quota()
        self._enforce_quota()
        self._thread.start()

    def close(self, timeout_s: float = 3.0) -> None:
        """Write what is queued (up to `timeout_s`), then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        left = self._queue.qsize()
        if left:
            log.warning("archive: %d frame(s) still queued at shutdown were not written", left)

    def stats(self) -> dict[str, int]:
        return {"saved": self.saved, "skipped": self.skipped, "errors": self.errors,
                "evicted": self.evicted, "bytes": self.bytes}

    # ------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            if self.disabled:
                self._maybe_resume()
            try:
                stem, job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                size = self._write(stem, job)
            except Exception as exc:  # noqa: BLE001 - a full disk must not stop the writer
                if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                    self._disable(stem, exc)
                    continue
                self.errors += 1
                if self.errors <= 3 or self.errors % 100 == 0:
                    log.error("archive: cannot write %s (%d errors so far): %s", stem, self.errors, exc,
                              extra={"camera_id": job.frame.camera_id, "frame_id": job.frame.frame_id})
                continue
            self.saved += 1
            self._frames.append((stem, size))
            self.bytes += size
            self._enforce_quota()

    def _disable(self, stem: Path, exc: OSError) -> None:
        self.disabled = True
        self.errors += 1
        for suffix in SUFFIXES:  # the half-written temporary file of this frame
            with contextlib.suppress(OSError):
                (stem.parent / f".{stem.name}{suffix}.tmp").unlink()
        dropped = 0
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
                dropped += 1
        self.skipped += dropped
        log.warning("archive disabled until space returns: %s is full (%s); verdicts are unaffected, "
                    "%d queued frame(s) not written", self.root, exc.strerror or exc, dropped)
        self._next_check = time.monotonic() + RECHECK_S
        self.on_change(f"{self.root} is full")

    def _maybe_resume(self) -> None:
        if time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + RECHECK_S
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return
        if free >= 2 * max(self._attempt_bytes, 1):
            self.disabled = False
            log.warning("archive re-enabled: %s has %.1f MB free again", self.root, free / 1e6)
            self.on_change("")

    def _bound_quota(self) -> None:
        with contextlib.suppress(OSError):
            room = int(0.9 * (shutil.disk_usage(self.root).free + self.bytes))
            if room < self.quota_bytes:
                log.warning("archive quota %.0f MB is more than %s can hold; using %.0f MB",
                            self.quota_bytes / 1e6, self.root, room / 1e6)
                self.quota_bytes = max(room, 1)

    def _write(self, stem: Path, job: Job) -> int:
        stem.parent.mkdir(parents=True, exist_ok=True)
        files: dict[str, bytes] = {}
        image = job.frame.image
        if image is not None:
            files[".png"] = _encode(".png", image, [])
            if self.annotate is not None:
                drawn = self.annotate(image, job, self.class_names)
                files[".annotated.jpg"] = _encode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        files[".json"] = json.dumps(self._record(stem, job, list(files)), indent=1).encode()
        self._attempt_bytes = sum(len(d) for d in files.values())
        for suffix, data in files.items():
            tmp = stem.parent / f".{stem.name}{suffix}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, stem.parent / f"{stem.name}{suffix}")
        return sum(len(d) for d in files.values())

    def _record(self, stem: Path, job: Job, suffixes: list[str]) -> dict:
        f, v, det = job.frame, job.verdict, job.detections
        names = self.class_names
        detections = [] if det is None else [
            {"class": names[c] if 0 <= c < len(names) else str(c), "score": round(float(s), 4),
             "box": [round(float(x), 1) for x in b]}
            for b, s, c in zip(det.boxes.tolist(), det.scores.tolist(), det.class_ids.tolist())]
        return {"camera_id": f.camera_id, "frame_id": f.frame_id, "part_id": f.part_id,
                "t_capture": iso_utc(f.t_wall_ns), "t_capture_ns": f.t_wall_ns,
                "verdict": v.outcome.value, "late": v.late,
                "reasons": [{"code": r.code.value, "detail": r.detail, "class": r.class_name, "score": r.score,
                             "box": r.box, "rule": r.rule} for r in v.reasons],
                "detections": detections, "backend": job.model_backend,
                "files": [stem.name + s for s in suffixes + [".json"]], **self.provenance,
                "archived_at": iso_utc(time.time_ns())}

    def _enforce_quota(self) -> None:
        while self.bytes > self.quota_bytes and len(self._frames) > 1:
            stem, size = self._frames.popleft()
            for suffix in SUFFIXES:
                with contextlib.suppress(FileNotFoundError):
                    (stem.parent / f"{stem.name}{suffix}").unlink()
            self.bytes -= size
            self.evicted += 1


def _encode(ext: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} {image.dtype} image as {ext}")
    return buf.tobytes()


def check_writable(path: Path) -> None:
    """ArchiveError unless a file can be created in `path` (made if missing)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ArchiveError(f"archive.path {path}: cannot write there: {exc.strerror or exc}") from None


def scan(root: Path) -> tuple[deque[tuple[Path, int]], int]:
    """Frames already in the tree, oldest first, and their total size."""
    frames: dict[Path, list[float]] = {}  # stem -> [newest mtime, bytes]
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            suffix = next((s for s in SUFFIXES if name.endswith(s)), None)
            if suffix is None or name.startswith("."):
                continue
            st = os.stat(os.path.join(dirpath, name))
            entry = frames.setdefault(Path(dirpath) / name[: -len(suffix)], [0.0, 0])
            entry[0], entry[1] = max(entry[0], st.st_mtime), entry[1] + st.st_size
    ordered = sorted(frames.items(), key=lambda kv: kv[1][0])
    return deque((stem, int(size)) for stem, (_m, size) in ordered), int(sum(v[1] for v in frames.values()))


def file_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def config_sha256(config: PipelineConfig) -> str:
    """Of the validated config (so comments and key order do not change it)."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()
