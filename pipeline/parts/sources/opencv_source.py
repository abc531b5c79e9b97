"""USB (V4L2), RTSP, HTTP-MJPEG and video-file cameras through OpenCV's VideoCapture.

Owns one `cv2.VideoCapture` and the grab thread that is its only user. The thread grabs
continuously, so a free-running stream never backs up inside FFmpeg, and converts a
grabbed frame (`retrieve`) only for a reader waiting for one: `read_into(slot)` posts
the lent frame slot and the thread retrieves the next frame straight into it
(`VideoCapture.retrieve(image=slot)`, OpenCV's conversion writing into the slot: no
copy and no allocation of ours); `read()` posts no slot and gets a new array. A frame
grabbed while no reader waits is dropped unconverted (counted in `frames_dropped`), so
the reader always gets the newest frame. A video file is the exception: its frames are
handed out one by one, none skipped, and its end raises `SourceEnded`. A frame of
another size than the slot (the camera entry's width x height) comes in an array of its
own, and the log says so once.

An MJPEG stream (HTTP-MJPEG cameras, MJPEG video files: FourCC `MJPG` through FFmpeg) is
read undecoded (`CAP_PROP_FORMAT` -1: FFmpeg hands over each JPEG's bytes) and checked
before it is decoded, as a replayed file is (`frame_check`): a JPEG cut short, or one
declaring more pixels than the camera entry's width x height, is a `LostFrame` for its
reader (ERROR `bad_frame`), never decoded; FFmpeg's own decoder would fill in the missing
part and hand over half a picture as if whole. Such a frame is then decoded by
`cv2.imdecode` and copied once into the slot.

A VideoCapture never recovers by itself after its peer dies or freezes, so on any failed
grab the thread releases it and opens a new one, waiting an exponential backoff between
attempts; `link_state` says where that stands (CONNECTING, STREAMING, DOWN). Open and
read timeouts are set explicitly (FFmpeg's default is 30 s) so a frozen peer is noticed.

What crosses the boundary: `SourceFrame`s whose image is the lent slot (or a new HxWx3
BGR uint8 array the receiver owns), with the stream's own timestamp
(`CAP_PROP_POS_MSEC`) as `camera_ts_ns` and the moment the grab returned as
`arrival_ns`: the capture stage maps the one onto the other
(pipeline.parts.sources.exposure), so a frame a frozen server hands over late is known to be
stale, and a frozen stream becomes STALLED.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config.cameras import CameraConfig
from pipeline.config.sources import OpenCVSourceConfig
from pipeline.core.backoff import Backoff
from pipeline.parts.sources.frame_check import frame_problem
from pipeline.parts.sources.frame_source import CameraState, LostFrame, SourceEnded, SourceError, SourceFrame

log = logging.getLogger(__name__)

NETWORK_SCHEMES = re.compile(r"^(rtsps?|https?|udp|tcp|rtmp|srt)://", re.IGNORECASE)
# FFmpeg reads its per-open options from this process-wide variable: opens that set it
# take this lock so two cameras opening at once do not see each other's options.
_FFMPEG_OPTIONS_LOCK = threading.Lock()


def quiet_native_logs() -> None:
    """Silence FFmpeg's and OpenCV's own stderr lines (two unprefixed lines per failed
    open: `[tcp @ 0x..] Connection ... refused`, `[ WARN:0@..] ... can't be used to capture`).
    They bypass the pipeline's logger, so they break the JSON log format and the
    documented cadence (this source logs the first and every 20th attempt, with the camera
    named). OpenCV reads OPENCV_FFMPEG_LOGLEVEL once, when FFmpeg first opens something,
    so this runs before the first open; an operator's own value (e.g. 32 to debug a stream)
    wins. AV_LOG_QUIET is -8; OpenCV's own level is set for the process."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@dataclass
class _Request:
    """A reader waiting for the next frame: into `out` (a lent slot) or a new array (None).
    Once `claimed`, the grab thread is writing into `out` until `done`."""

    out: np.ndarray | None
    claimed: bool = False
    done: bool = False
    frame: SourceFrame | None = None
    lost: LostFrame | None = None  # the frame existed but is not fit to judge (an MJPEG frame cut short)


class OpenCVSource:
    """A `CameraSource` (and `SlotSource`) over a VideoCapture, with its own grab thread."""

    free_running = True
    software_triggered = False
    copies_into_slot = False  # OpenCV converts the grabbed frame straight into the slot

    def __init__(self, uri: str, backoff: Backoff, *, open_timeout_ms: int = 3000, read_timeout_ms: int = 2000,
                 decode_threads: int = 1, rtsp_transport: str = "tcp", size: tuple[int, int] | None = None,
                 fps: float | None = None, name: str = "camera"):
        self.uri = uri
        self.name = name
        self.is_file = not (uri.isdigit() or uri.startswith("/dev/video") or NETWORK_SCHEMES.match(uri))
        self.live = not self.is_file
        self.link_state = CameraState.CONNECTING
        self.frames_dropped = 0
        self.reconnects = 0
        self._connected_before = False
        self._backoff = backoff
        self._open_params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                             read_timeout_ms, cv2.CAP_PROP_N_THREADS, decode_threads]
        self._rtsp_transport = rtsp_transport
        self._stuck_grab_ns = int(read_timeout_ms * 0.9e6)
        self._size, self._fps = size, fps
        self._cond = threading.Condition()
        self._request: _Request | None = None  # posted by a reader, claimed by the grab thread
        self._misfit_logged = False
        self._raw_mjpeg = False  # this connection hands over JPEG bytes, checked before decoding
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab_loop, name=f"grab.{name}", daemon=True)
        quiet_native_logs()  # before this source's first open: FFmpeg reads its level once

    @classmethod
    def from_config(cls, camera: CameraConfig) -> "OpenCVSource":
        src = camera.source
        if not isinstance(src, OpenCVSourceConfig):
            raise TypeError(f"camera {camera.id}: expected an opencv source, got {src.kind!r}")
        return cls(src.uri, Backoff(src.reconnect_initial_s, src.reconnect_max_s),
                   open_timeout_ms=src.open_timeout_ms, read_timeout_ms=src.read_timeout_ms,
                   decode_threads=src.decode_threads, rtsp_transport=src.rtsp_transport,
                   size=(camera.width, camera.height), fps=camera.fps, name=camera.id)

    # ------------------------------------------------------------------ FrameSource
    def open(self) -> None:
        """Start the grab thread. A missing video file is an error now; a stream or device
        that cannot be opened yet is not: the thread keeps trying (link_state DOWN)."""
        if self.is_file and not Path(self.uri).is_file():
            raise SourceError(f"video file not found: {self.uri}")
        if self._thread.ident is None:
            self._thread.start()

    def read(self, timeout_s: float) -> SourceFrame | None:
        return self.read_into(None, timeout_s)

    def read_into(self, out: np.ndarray | None, timeout_s: float) -> SourceFrame | None:
        """The next frame, retrieved by the grab thread into the lent slot `out` when it
        fits (a new array when `out` is None or of another size)."""
        request = _Request(out)
        with self._cond:
            if self._ended:
                raise SourceEnded(f"end of video file {self.uri}")
            self._request = request
            self._cond.notify_all()  # a file's grab thread waits for a reader
            self._cond.wait_for(lambda: request.done or (self._ended and not request.claimed), timeout_s)
            if not request.claimed:  # nothing came: withdrawn, the slot is the caller's again
                self._request = None
                if self._ended:
                    raise SourceEnded(f"end of video file {self.uri}")
                return None
            # the grab thread is converting a frame it holds into the slot: a retrieve's
            # time, never a wait on the peer, and the slot must not go back before it is done
            self._cond.wait_for(lambda: request.done)
        if request.lost is not None:
            raise request.lost
        if request.frame is None and self._ended:
            raise SourceEnded(f"end of video file {self.uri}")
        return request.frame

    def close(self) -> None:
        """Stop the grab thread. It may be inside a blocking FFmpeg call (at most the open or
        read timeout); it releases the capture itself when that returns, so do not wait."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(0.5)

    def fire_trigger(self) -> bool:
        return False  # streams have no trigger input: parts are matched to the next frame

    # ------------------------------------------------------------------ grab thread
    def _grab_loop(self) -> None:
        capture: cv2.VideoCapture | None = None
        try:
            while not self._stop.is_set() and not self._ended:
                if capture is None:
                    capture = self._connect()
                    continue
                if not self._grab_one(capture):
                    capture.release()
                    capture = None
        finally:
            if capture is not None:
                capture.release()
            with self._cond:
                self._cond.notify_all()

    def _connect(self) -> cv2.VideoCapture | None:
        capture = self._open_capture()
        if capture is not None:
            if self._connected_before:
                self.reconnects += 1
                log.warning("camera %s: reconnected to %s", self.name, self.uri)
            self._backoff.reset()
            self._connected_before = True
            self.link_state = CameraState.STREAMING
            return capture
        delay = self._backoff.next_delay()
        if self._backoff.failures == 1 or self._backoff.failures % 20 == 0:  # never a log line per attempt
            log.warning("camera %s: cannot open %s (attempt %d), retrying in %.1f s",
                        self.name, self.uri, self._backoff.failures, delay)
        self.link_state = CameraState.DOWN
        self._stop.wait(delay)
        return None

    def _grab_one(self, capture: cv2.VideoCapture) -> bool:
        """Grab one frame and retrieve it for the waiting reader; False when the link is
        lost (or the file ended)."""
        asked_ns = time.monotonic_ns()
        ok = capture.grab()
        arrival_ns = time.monotonic_ns()  # the frame is in; decoding it is our time, not the camera's
        if ok and not self.is_file and self._stuck(arrival_ns - asked_ns):
            return False
        request = self._claim(wait=self.is_file) if ok else None
        if ok and request is None:
            if not self.is_file:
                self.frames_dropped += 1  # nobody asked: dropped before it cost a conversion
            return True  # (a file's reader is only missing when the source is stopping)
        frame, lost = None, None
        try:
            frame = self._frame(capture, request.out, arrival_ns) if request is not None else None
        except LostFrame as exc:
            lost = exc
        finally:
            self._complete(request, frame, ended=frame is None and lost is None and self.is_file, lost=lost)
        if frame is None and lost is None and not self.is_file:
            log.warning("camera %s: no frame from %s within the read timeout or the stream ended; reconnecting",
                        self.name, self.uri)
            self.link_state = CameraState.DOWN
            return False
        return True

    def _stuck(self, grab_ns: int) -> bool:
        """FFmpeg's read timeout fired and it handed over the frame it had in flight (a
        frozen server): an old image, never one to judge a part by."""
        if grab_ns < self._stuck_grab_ns:
            return False
        log.warning("camera %s: a grab took %.1f s (read timeout); dropping its frame and reconnecting",
                    self.name, grab_ns / 1e9)
        self.link_state = CameraState.DOWN
        return True

    def _frame(self, capture: cv2.VideoCapture, out: np.ndarray | None, arrival_ns: int) -> SourceFrame | None:
        image = self._retrieve(capture, out)
        if image is None or image.size == 0:
            return None
        stream_ms = capture.get(cv2.CAP_PROP_POS_MSEC)
        return SourceFrame(image, camera_ts_ns=int(stream_ms * 1e6) if stream_ms > 0 else None, arrival_ns=arrival_ns)

    def _claim(self, wait: bool) -> _Request | None:
        """The waiting reader's request, now this thread's to fill; None when nobody waits
        (a file waits for its reader: its frames are handed out one by one)."""
        with self._cond:
            if wait:
                self._cond.wait_for(lambda: self._request is not None or self._stop.is_set())
            request, self._request = self._request, None
            if request is not None:
                request.claimed = True
            return request

    def _complete(self, request: _Request | None, frame: SourceFrame | None, ended: bool,
                  lost: LostFrame | None = None) -> None:
        """Hand `frame` (or why it is lost) to its reader, and a file's end to whoever waits, in one step."""
        with self._cond:
            self._ended = self._ended or ended
            if request is not None:
                request.frame, request.lost, request.done = frame, lost, True
            self._cond.notify_all()

    def _retrieve(self, capture: cv2.VideoCapture, out: np.ndarray | None) -> np.ndarray | None:
        """The grabbed frame, converted by OpenCV straight into `out` when it fits."""
        if self._raw_mjpeg:
            image = self._decode_checked(capture.retrieve()[1], out)
        elif out is None:
            return capture.retrieve()[1]
        else:
            image = capture.retrieve(image=out)[1]
        if out is not None and image is not None and image is not out:
            self._log_misfit(image, out)
        return image

    def _decode_checked(self, packet: np.ndarray | None, out: np.ndarray | None) -> np.ndarray | None:
        """Decode one JPEG of an MJPEG stream after checking its bytes; LostFrame if unfit."""
        if packet is None or packet.size == 0:
            return None  # no packet: the link, not the frame (the caller reconnects)
        data = packet.tobytes()
        problem = frame_problem(data, self._size)
        if problem is not None:
            raise LostFrame(f"camera {self.name}: {problem}")
        image = cv2.imdecode(packet.reshape(-1), cv2.IMREAD_COLOR)
        if image is None:
            raise LostFrame(f"camera {self.name}: a JPEG of the MJPEG stream does not decode")
        if out is None or out.shape != image.shape:
            return image
        np.copyto(out, image)  # imdecode has no destination: the one copy, into the slot
        return out

    def _log_misfit(self, image: np.ndarray, out: np.ndarray) -> None:
        if not self._misfit_logged:
            self._misfit_logged = True  # OpenCV allocated a new array: the frame has another size
            log.warning("camera %s: frames are %dx%d, its frame slots are %dx%d (the camera entry's width and "
                        "height): each frame is decoded into an array of its own; set width and height to the "
                        "stream's size", self.name, image.shape[1], image.shape[0], out.shape[1], out.shape[0])

    def _open_capture(self) -> cv2.VideoCapture | None:
        if self.uri.isdigit() or self.uri.startswith("/dev/video"):
            return self._open_device()
        with _FFMPEG_OPTIONS_LOCK:
            previous = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{self._rtsp_transport}"
            try:
                capture = cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, self._open_params)
            finally:
                if previous is None:
                    del os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"]
                else:
                    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = previous
        if not capture.isOpened():
            return _released(capture)
        # before the first grab (FFmpeg's rule for raw mode): an MJPEG stream's JPEGs come undecoded
        self._raw_mjpeg = _fourcc(capture) == "MJPG" and capture.set(cv2.CAP_PROP_FORMAT, -1)
        return capture

    def _open_device(self) -> cv2.VideoCapture | None:
        device: int | str = int(self.uri) if self.uri.isdigit() else self.uri
        capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not capture.isOpened():
            return _released(capture)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver keeps one frame: the newest
        if self._size is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        if self._fps is not None:
            capture.set(cv2.CAP_PROP_FPS, self._fps)
        return capture


def _fourcc(capture: cv2.VideoCapture) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> shift) & 0xFF) for shift in (0, 8, 16, 24))


def _released(capture: cv2.VideoCapture) -> None:
    capture.release()
    return None
