"""Real camera peers for the camera tests, each in its own process on loopback only:
Aravis' fake GigE Vision camera, an RTSP server (GStreamer's gst-rtsp-server) and an
HTTP-MJPEG server. A test starts a peer, talks to it through the real protocol, and
stops it by its pid (SIGKILL when the test wants a peer that dies mid-stream).

Run as a program, this module is the peer itself:
    python -m tests.peers gige SERIAL        (fake GigE camera on 127.0.0.1:3956)
    python -m tests.peers rtsp PORT          (rtsp://127.0.0.1:PORT/cam, H.264 320x240 25 fps)
    python -m tests.peers mjpeg PORT         (http://127.0.0.1:PORT/stream.mjpg, 25 fps)
    python -m tests.peers mjpeg PORT bad     (the same, the synthetic camera's frames in turn:
                                              whole 320x240, cut to 40% of its bytes, whole 640x480)
Each prints "ready" on stdout once it serves.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"  # Aravis opens a fake camera only on an interface address: 127.0.0.1
READY_TIMEOUT_S = 15.0


class Peer:
    """One peer process, started and stopped by its pid."""

    def __init__(self, *args: str):
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Peer":
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.peers", *self.args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # the peer prints "ready" or dies with a reason on stderr
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"peer {self.args} did not start: {self.proc.stderr.read()[-2000:]}")
        return self

    def pause(self) -> None:
        """Freeze the peer (SIGSTOP): its sockets stay open, nothing answers."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.send_signal(signal.SIGCONT)  # a frozen peer acts on SIGTERM only once it runs
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> "Peer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def reset_fake_camera(serial_or_address: str = LOOPBACK) -> None:
    """Put back what tests set: the fake camera keeps register values between clients."""
    import gi

    gi.require_version("Aravis", "0.8")
    from gi.repository import Aravis

    camera = Aravis.Camera.new(serial_or_address)
    camera.clear_triggers()
    camera.set_pixel_format_from_string("Mono8")
    _, max_w = camera.get_width_bounds()
    _, max_h = camera.get_height_bounds()
    camera.set_region(0, 0, max_w, max_h)
    camera.set_frame_rate(25.0)


# --------------------------------------------------------------------------- the peers


def _serve_gige(serial: str) -> None:
    import gi

    gi.require_version("Aravis", "0.8")
    from gi.repository import Aravis

    fake = Aravis.GvFakeCamera.new(LOOPBACK, serial)
    if fake is None or not fake.is_running():
        raise SystemExit(f"fake camera could not bind {LOOPBACK}:3956 (another one running?)")
    fake.get_fake_camera().set_trigger_frequency(1000.0)  # poll software triggers every ms
    _ready_then_wait()


def _serve_rtsp(port: str) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(LOOPBACK)
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 "
                       "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        raise SystemExit(f"rtsp server could not bind {LOOPBACK}:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


def mjpeg_bad_frames() -> list[bytes]:
    """What `mjpeg PORT bad` serves in turn, from the project's synthetic camera (seed 3, frame 0):
    the whole 320x240 JPEG, the same cut to 40% of its bytes, and a whole 640x480 JPEG."""
    import cv2

    from pipeline.parts.sources.synthetic import SyntheticSource

    def jpeg(width: int, height: int) -> bytes:
        return cv2.imencode(".jpg", SyntheticSource(width=width, height=height, seed=3).render(0).image)[1].tobytes()

    whole = jpeg(320, 240)
    return [whole, whole[: len(whole) * 4 // 10], jpeg(640, 480)]


def _serve_mjpeg(port: str, pattern: str = "plain") -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import cv2
    import numpy as np

    bad = mjpeg_bad_frames() if pattern == "bad" else None

    def frame(n: int) -> bytes:
        if bad is not None:
            return bad[n % len(bad)]
        image = np.full((240, 320, 3), (n * 7) % 256, np.uint8)
        cv2.putText(image, str(n), (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 2, (0, 0, 255), 3)
        return cv2.imencode(".jpg", image)[1].tobytes()

    class Stream(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for n in range(1_000_000):
                jpeg = frame(n)
                try:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                    self.wfile.write(jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return
                time.sleep(0.04)  # paces the peer: a 25 fps MJPEG camera

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, int(port)), Stream)
    print("ready", flush=True)
    server.serve_forever()


def _ready_then_wait() -> None:
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    {"gige": _serve_gige, "rtsp": _serve_rtsp, "mjpeg": _serve_mjpeg}[kind](*args)


def read_frames(source, count: int, timeout_s: float = 10.0) -> list:
    """Up to `count` frames read from an opened source within `timeout_s`."""
    frames, end = [], time.monotonic() + timeout_s
    while len(frames) < count and time.monotonic() < end:
        got = source.read(0.2)
        if got is not None:
            frames.append(got)
    return frames
