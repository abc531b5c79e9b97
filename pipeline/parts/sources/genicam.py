"""GigE Vision / USB3 Vision cameras through Aravis (GObject introspection, `gi`).

Why Aravis and not `harvesters` + a GenTL producer: Aravis is packaged by Debian
(`gir1.2-aravis-0.8`), speaks GigE Vision itself (no vendor producer to install), and
ships a fake GigE Vision camera that talks the real protocol on loopback, so the tests
exercise the real control and stream channels, software triggers included; the GenTL
simulator in the `genicam` wheel has no trigger features.

Owns one `Aravis.Camera`, its stream and the stream's driver buffers. `read_into(slot)`
pops a filled buffer, reads its memory in place (pipeline.parts.sources.aravis_memory: no
copy by PyGObject) and writes the image once into the lent frame slot (copied, or
converted by OpenCV straight into it; a Bayer frame into a one-byte slot stays the raw
mosaic for the GPU kernel), then pushes the buffer back before returning, so a slow
consumer never starves the camera. `read()` does the same into a new array. A frame
that does not fit the slot (another size than the roi or width x height) comes in an
array of its own, said once in the log. The camera's timestamp travels as
`camera_ts_ns` beside the capture stage's host time.

The camera is opened by address (unicast); discovery, which broadcasts on every network
interface, is used only when the config sets `discovery: true`. Every setting the
config names is written at each (re)connect, trigger mode included, because a camera
keeps register values from its previous client. An Aravis stream never recovers after
its camera restarts, so a lost control channel (`control-lost`) or a dead stream closes
everything and the link thread reconnects after an exponential backoff.

No camera call runs on a pipeline thread except the first connect in `open()` (start-up,
before any stage runs): reconnecting, and closing a camera that may be gone (each of
its register writes blocks for Aravis' GVCP timeout and retries, ~2.5 s), run on this
source's own link thread; `read()` only pops the driver's buffer queue, bounded by its
timeout; the software trigger write runs on the camera's trigger thread
(pipeline.parts.sources.trigger_line), and a failed write counts as a lost control channel.
Each frame carries the camera's timestamp (`camera_ts_ns`) and the host's receive time
of the buffer (`arrival_ns`, Aravis' system timestamp moved onto the monotonic clock).
"""

from __future__ import annotations

import logging
import threading
import time

import gi
import numpy as np

gi.require_version("Aravis", "0.8")
from gi.repository import Aravis, GLib  # noqa: E402  (after require_version)

from pipeline.config.cameras import CameraConfig  # noqa: E402
from pipeline.config.sources import GenICamSourceConfig  # noqa: E402
from pipeline.core.backoff import Backoff  # noqa: E402
from pipeline.parts.sources.aravis_memory import buffer_memory  # noqa: E402
from pipeline.parts.sources.frame_source import CameraState, SourceError, SourceFrame, lost_frame  # noqa: E402
from pipeline.parts.sources.pixel_formats import PixelFormatError, into_slot, to_pipeline_image  # noqa: E402

log = logging.getLogger(__name__)

TRIGGER_SOURCES = {"software": "Software", "line0": "Line0", "line1": "Line1", "line2": "Line2"}


class CameraRefused(SourceError):
    """The camera answered but does not fit the config (serial, pixel format, ROI): a
    configuration fault that reconnecting cannot fix."""


class GenICamSource:
    """A `CameraSource` (and `SlotSource`) over one Aravis camera."""

    copies_into_slot = False  # the driver's buffer is copied once either way: into the slot or a new array

    def __init__(self, settings: GenICamSourceConfig, fps: float, backoff: Backoff, name: str = "camera"):
        self.settings = settings
        self.fps = fps
        self.name = name
        self.free_running = settings.trigger == "free_run"
        self.software_triggered = settings.trigger == "software"
        self.live = True
        self.link_state = CameraState.CONNECTING
        self.reconnects = 0
        self._backoff = backoff
        self._camera = None
        self._stream = None
        self._control_lost = False
        self._device = None
        self._connected_before = False
        self._misfit_logged = False
        self._lost = threading.Event()  # read() saw the link go: the link thread takes over
        self._stop = threading.Event()
        self._link_thread = threading.Thread(target=self._link_loop, name=f"link.{name}", daemon=True)

    @classmethod
    def from_config(cls, camera: CameraConfig) -> "GenICamSource":
        src = camera.source
        if not isinstance(src, GenICamSourceConfig):
            raise TypeError(f"camera {camera.id}: expected a genicam source, got {src.kind!r}")
        return cls(src, camera.fps, Backoff(src.reconnect_initial_s, src.reconnect_max_s), camera.id)

    # ------------------------------------------------------------------ FrameSource
    def open(self) -> None:
        """Connect now. A camera that refuses the config is an error; one that cannot be
        reached is not: it is DOWN and `read()` keeps trying."""
        try:
            self._connect()
        except CameraRefused:
            raise
        except SourceError as exc:
            log.warning("camera %s: %s; will keep trying", self.name, exc)
            self._lost.set()
            self.link_state = CameraState.DOWN
        if self._link_thread.ident is None:
            self._link_thread.start()

    def read(self, timeout_s: float) -> SourceFrame | None:
        return self.read_into(None, timeout_s)

    def read_into(self, out: np.ndarray | None, timeout_s: float) -> SourceFrame | None:
        """The next frame, written into the lent slot `out` when it fits (a `SlotSource`)."""
        stream = self._stream
        if stream is None or self._lost.is_set():
            self._stop.wait(timeout_s)  # the link thread is reconnecting
            return None
        if self._control_lost:
            self._hand_to_link_thread()
            raise SourceError(f"camera {self._where()}: control channel lost")
        buffer = stream.timeout_pop_buffer(max(1, int(timeout_s * 1e6)))
        if buffer is None:
            return None
        try:
            return self._frame_from(buffer, out)
        finally:
            stream.push_buffer(buffer)  # the driver gets its buffer back before any stage runs

    def close(self, timeout_s: float = 3.0) -> None:
        """Stop the link thread, which stops the camera; waits at most `timeout_s` (a gone
        camera's stop_acquisition takes Aravis' GVCP timeout)."""
        self._stop.set()
        if self._link_thread.ident is not None:
            self._link_thread.join(timeout_s)
        else:
            self._release()

    def fire_trigger(self) -> bool:
        """One software trigger write; blocks for the GVCP timeout when the camera is gone,
        so only the trigger thread calls it. A failed write means the link is lost."""
        camera = self._camera
        if camera is None or not self.software_triggered or self._lost.is_set():
            return False
        try:
            camera.software_trigger()
        except GLib.Error as exc:
            log.warning("camera %s: software trigger failed: %s", self.name, exc.message)
            self._control_lost = True
            return False
        return True

    # ------------------------------------------------------------------ frames
    def _frame_from(self, buffer, out: np.ndarray | None) -> SourceFrame:
        status = buffer.get_status()
        frame_counter = buffer.get_frame_id()
        part_id = str(frame_counter) if self.settings.frame_counter_part_ids else None
        if status != Aravis.BufferStatus.SUCCESS:
            raise lost_frame(f"camera {self._where()}: frame {frame_counter} incomplete ({status.value_nick})", part_id)
        data, fmt = buffer_memory(buffer), self.settings.pixel_format  # valid until the buffer is pushed back
        width, height = buffer.get_image_width(), buffer.get_image_height()
        try:
            written = into_slot(data, fmt, width, height, out) if out is not None else None
            if written is None and out is not None:
                self._log_misfit(width, height, out.shape)
            image, bayer = written or (to_pipeline_image(data, fmt, width, height), None)
        except PixelFormatError as exc:
            raise lost_frame(f"camera {self._where()}: frame {frame_counter}: {exc}", part_id) from None
        return SourceFrame(image, camera_ts_ns=buffer.get_timestamp() or None, part_id=part_id,
                           arrival_ns=_monotonic_from_wall(buffer.get_system_timestamp()), bayer=bayer)

    def _log_misfit(self, width: int, height: int, slot: tuple[int, ...]) -> None:
        if not self._misfit_logged:
            self._misfit_logged = True
            log.warning("camera %s: frames are %dx%d %s, its frame slots are %s: each frame is copied into an "
                        "array of its own; set the camera's roi (or width and height) to the image size",
                        self.name, width, height, self.settings.pixel_format, "x".join(map(str, slot)))

    # ------------------------------------------------------------------ link thread
    def _hand_to_link_thread(self) -> None:
        """Called by read(): from now on only the link thread touches the camera."""
        self.link_state = CameraState.DOWN
        self._lost.set()

    def _link_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._lost.is_set():
                    self._stop.wait(0.1)
                    continue
                self._release()
                self._stop.wait(self._backoff.next_delay())
                if not self._stop.is_set():
                    self._try_reconnect()
        finally:
            self._release()

    def _try_reconnect(self) -> None:
        try:
            self._connect()
        except SourceError as exc:
            if self._backoff.failures == 1 or self._backoff.failures % 20 == 0:
                log.warning("camera %s: reconnect failed (attempt %d): %s", self.name, self._backoff.failures, exc)
            return
        self._lost.clear()

    def _release(self) -> None:
        """Stop and drop the camera (on the link thread, or before it ever ran)."""
        camera, self._camera, self._stream, self._device = self._camera, None, None, None
        if camera is None:
            return
        try:
            camera.stop_acquisition()  # before the stream and its buffers go
        except GLib.Error as exc:  # the camera may be gone already
            log.debug("camera %s: stop_acquisition: %s", self.name, exc.message)

    # ------------------------------------------------------------------ connection

    def _connect(self) -> None:
        self.link_state = CameraState.CONNECTING if not self._connected_before else self.link_state
        try:
            camera = Aravis.Camera.new(self._device_id())
        except GLib.Error as exc:
            raise SourceError(f"cannot open camera {self._where()}: {exc.message}") from None
        try:
            self._check_identity(camera)
            self._configure(camera)
            stream = self._start_stream(camera)
        except GLib.Error as exc:
            _stop_quietly(camera)
            raise SourceError(f"camera {self._where()}: {exc.message}") from None
        except SourceError:
            _stop_quietly(camera)
            raise
        self._camera, self._stream, self._control_lost = camera, stream, False
        self._backoff.reset()
        if self._connected_before:
            self.reconnects += 1
            log.warning("camera %s: reconnected to %s", self.name, self._where())
        self._connected_before = True
        self.link_state = CameraState.STREAMING

    def _device_id(self) -> str:
        s = self.settings
        return s.address or s.serial or s.user_id  # type: ignore[return-value]  # the config requires one

    def _where(self) -> str:
        s = self.settings
        return " ".join(f"{k}={v}" for k, v in (("address", s.address), ("serial", s.serial),
                                                ("user_id", s.user_id)) if v)

    def _check_identity(self, camera) -> None:
        s = self.settings
        for key, expected, actual in (("serial", s.serial, camera.get_device_serial_number),
                                      ("user_id", s.user_id, _user_id_of(camera))):
            if expected is not None and actual() != expected:
                raise CameraRefused(f"camera at {s.address or self._device_id()} has {key} {actual()!r}, "
                                    f"the config expects {expected!r}: check the cabling or the config")

    def _configure(self, camera) -> None:
        s = self.settings
        formats = camera.dup_available_pixel_formats_as_strings()
        if s.pixel_format not in formats:
            raise CameraRefused(f"camera {self._where()} has no pixel format {s.pixel_format}; it offers {formats}")
        camera.set_pixel_format_from_string(s.pixel_format)
        if s.roi is not None:
            self._set_roi(camera, s.roi)
        if s.packet_size is not None and camera.is_gv_device():
            camera.gv_set_packet_size(s.packet_size)
        if s.exposure_us is not None:
            camera.set_exposure_time(s.exposure_us)
        if s.gain_db is not None:
            camera.set_gain(s.gain_db)
        if camera.is_frame_rate_available():
            camera.set_frame_rate(self.fps)  # before the trigger: Aravis may switch triggers off here
        if self.free_running:
            camera.clear_triggers()
        else:
            camera.set_trigger(TRIGGER_SOURCES[s.trigger])

    def _set_roi(self, camera, roi: tuple[int, int, int, int]) -> None:
        x, y, w, h = roi
        _, max_w = camera.get_width_bounds()
        _, max_h = camera.get_height_bounds()
        if x + w > max_w or y + h > max_h:
            raise CameraRefused(f"roi {list(roi)} does not fit the sensor of camera {self._where()} ({max_w}x{max_h})")
        camera.set_region(x, y, w, h)

    def _start_stream(self, camera):
        stream = camera.create_stream(None, None)
        if stream is None:
            raise SourceError(f"camera {self._where()}: cannot create a stream")
        payload = camera.get_payload()
        for _ in range(self.settings.buffer_count):
            stream.push_buffer(Aravis.Buffer.new_allocate(payload))
        device = camera.get_device()
        self._device = device
        device.connect("control-lost", self._on_control_lost)
        camera.start_acquisition()
        return stream

    def _on_control_lost(self, device) -> None:
        # Runs on an Aravis thread: only raise the flag, `read()` acts on it. A device
        # released before a reconnect may still say so: only the current one counts.
        if device is self._device:
            self._control_lost = True


def _user_id_of(camera):
    def read() -> str | None:
        device = camera.get_device()
        node = device.get_feature("DeviceUserID")
        return device.get_string_feature_value("DeviceUserID") if node is not None else None
    return read


def _monotonic_from_wall(system_ts_ns: int) -> int | None:
    """Aravis stamps a buffer's arrival with the wall clock (g_get_real_time); the
    pipeline's clock is monotonic: move it over by their current difference."""
    if not system_ts_ns:
        return None
    return system_ts_ns - (time.time_ns() - time.monotonic_ns())


def _stop_quietly(camera) -> None:
    try:
        camera.stop_acquisition()
    except GLib.Error:
        pass
