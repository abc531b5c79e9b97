"""Builds the pipeline's parts from the config: opens the model, the sources and the
PUB socket, warms the model up, and checks that the rules fit the model.

Owns the translation of every start-up failure into a `StartupError` that names the
file or key at fault, so `pipeline run` exits 2 with a message, never a traceback.
Everything opened so far is closed again when a later part fails.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Mapping

import zmq

from pipeline.composition.app import Parts, StartupError
from pipeline.composition.warmup import warm_path
from pipeline.config.model import ModelConfig
from pipeline.config.models import PipelineConfig
from pipeline.core.contracts import EvidenceStore, FrameSource, InferenceBackend
from pipeline.core.errors import ModelOutputError
from pipeline.parts.annotate import annotate
from pipeline.parts.archive import ArchiveError, FailedPartArchive
from pipeline.parts.backends import BackendChoice, choose_backend
from pipeline.parts.decoding.yolo_decode import YoloDecoder
from pipeline.parts.modelfile.model_info import ModelError
from pipeline.parts.preprocessing.letterbox import Letterboxer
from pipeline.parts.publishing.zmq_publisher import PublisherError, ZmqPublisher
from pipeline.parts.rules import RuleBook
from pipeline.parts.sources import create_source
from pipeline.parts.sources.frame_source import SourceError
from pipeline.parts.sources.triggers import TriggerInbox

log = logging.getLogger(__name__)


def open_backend(model: ModelConfig):
    return open_chosen_backend(model).backend


def open_chosen_backend(model: ModelConfig) -> BackendChoice:
    """The backend and why it is that one (reported in the heartbeat as `backend_choice`)."""
    try:
        return choose_backend(model)
    except ModelError as exc:
        raise StartupError(str(exc)) from None


def check_rules(config: PipelineConfig, class_names: tuple[str, ...]) -> None:
    unknown = RuleBook(config.rules, class_names).unknown_rule_classes()
    if unknown:
        raise StartupError(f"rules name classes the model does not have: {unknown}; "
                           f"the model's classes are {list(class_names)}")


def make_decoder(model: ModelConfig, backend: InferenceBackend) -> YoloDecoder:
    """The candidate head's K x 6 rows when the backend's model ends in the head, else the
    raw tensor with the same K cap applied on the host; a whole batch per call."""
    return YoloDecoder(len(backend.class_names), model.confidence, model.iou, model.max_detections,
                       model.max_candidates, head=backend.emits_candidates)


def build_parts(config: PipelineConfig, sources: Mapping[str, FrameSource] | None = None,
                backend: InferenceBackend | None = None, archive: EvidenceStore | None = None) -> Parts:
    """Every part opened from `config`, except those given: `sources` (camera id -> an
    unopened source) replace the configured cameras' sources, `backend` (loaded, not yet
    warmed) the configured model, `archive` (started) the configured failed-part archive.
    Nothing stays open when a later part fails."""
    with contextlib.ExitStack() as undo:
        choice = BackendChoice(backend, "substituted") if backend is not None else open_chosen_backend(config.model)
        backend = choice.backend
        undo.callback(backend.close)
        check_rules(config, backend.class_names)
        backend.warmup(config.model.warmup_runs)
        transform, slot_pool, close_preprocess, frame_allocator = open_preprocess(config, backend)
        undo.callback(close_preprocess)
        opened = _open_sources(config, sources, undo)
        context = zmq.Context()
        undo.callback(context.term)
        publisher = _open_publisher(config, context, backend.class_names)
        undo.callback(publisher.close)  # before context.term runs, or term waits forever on its socket
        triggers = open_trigger_inboxes(config, context)
        for inbox in triggers.values():
            undo.callback(inbox.close)
        archive = archive if archive is not None else open_archive(config, backend.class_names)
        if archive is not None:
            undo.callback(archive.close)
        parts = Parts(opened, backend, transform, make_decoder(config.model, backend), publisher,
                      context, extra_closers=[archive.close] if archive is not None else [], archive=archive,
                      slot_pool=slot_pool, triggers=triggers, frame_allocator=frame_allocator,
                      lend_frame_slots=archive is None,  # the archive reads the raw image after publish
                      backend_choice=choice.why)
        parts.extra_closers.append(close_preprocess)
        parts.extra_closers.extend(inbox.close for inbox in triggers.values())
        _warm(parts, config)
        undo.pop_all()
        names = ", ".join(backend.class_names[:8]) + (", ..." if len(backend.class_names) > 8 else "")
        log.info("backend %s, %d classes (%s), %d camera(s)", backend.name, len(backend.class_names), names, len(opened))
        return parts


def _open_sources(config: PipelineConfig, given: Mapping[str, FrameSource] | None,
                  undo: contextlib.ExitStack) -> dict[str, FrameSource]:
    opened: dict[str, FrameSource] = {}
    for cam in config.cameras:
        opened[cam.id] = _open_source(cam, given[cam.id] if given is not None else None)
        undo.callback(opened[cam.id].close)
    return opened


def _open_publisher(config: PipelineConfig, context: zmq.Context, class_names: tuple[str, ...]) -> ZmqPublisher:
    try:
        publisher = ZmqPublisher.from_config(config.publisher, context, config.budget_ms, class_names)
    except PublisherError as exc:
        raise StartupError(str(exc)) from None
    if not publisher.wait_for_subscriber(config.publisher.await_subscriber_ms / 1000):
        log.info("no subscriber yet on %s; starting anyway", config.publisher.endpoint)
    return publisher


def _warm(parts: Parts, config: PipelineConfig) -> None:
    """Before READY: the first real parts pay no first-call costs."""
    try:
        warm_path(parts, config)
    except ModelOutputError as exc:  # a model that cannot judge a blank frame cannot judge a part
        raise StartupError(f"{config.model.location}: the model's output on a blank frame at warm-up is "
                           f"unusable ({exc}); check the export (opset, FP16 overflow) or the file") from None


def open_preprocess(config: PipelineConfig, backend):
    """(transform, slot pool or None, closer, frame allocator or None): the fused CUDA
    kernel writing device slots, with page-locked frame slots, when the backend takes
    device buffers (unless model.preprocess is cpu), else OpenCV."""
    on_gpu = backend.accepts_device_input
    mode = config.model.preprocess
    if mode == "gpu" and not on_gpu:
        raise StartupError(f"model.preprocess: gpu needs a GPU-resident backend, but {backend.name} takes host "
                           f"arrays; use backend tensorrt, or onnxruntime-cuda "
                           f"with pycuda installed (pip install '.[gpu]'), or preprocess: cpu")
    if mode == "cpu" or not on_gpu:
        return Letterboxer(backend.input_size), None, lambda: None, None
    from pipeline.composition.app import slot_count
    from pipeline.parts.gpu.cuda import CudaError
    from pipeline.parts.preprocessing.gpu_preprocessing import GpuPreprocess

    try:
        gpu = GpuPreprocess.open(config.model.device_id, backend.input_size, backend.input_dtype, slot_count(config))
    except CudaError as exc:
        raise StartupError(f"model.preprocess: GPU preprocessing unavailable: {exc}") from None
    log.info("preprocess: fused CUDA letterbox on %s", gpu.device.describe())
    return gpu.transform, gpu.pool, gpu.close, gpu.pinned


def open_archive(config: PipelineConfig, class_names: tuple[str, ...]) -> FailedPartArchive | None:
    if not config.archive.enabled:
        return None
    try:
        archive = FailedPartArchive.from_config(config.archive, config, class_names, annotate=annotate)
    except ArchiveError as exc:
        raise StartupError(str(exc)) from None
    archive.start()
    log.info("archiving %s frames under %s (quota %g MB)", "/".join(config.archive.save), config.archive.path,
             config.archive.quota_mb)
    return archive


def open_trigger_inboxes(config: PipelineConfig, context: zmq.Context) -> dict[str, TriggerInbox]:
    """Bind each camera's trigger input; the capture stage starts and stops its thread."""
    inboxes: dict[str, TriggerInbox] = {}
    for cam in config.cameras:
        if cam.trigger_endpoint is None:
            continue
        try:
            inboxes[cam.id] = TriggerInbox.from_config(cam, context)
        except zmq.ZMQError as exc:
            for inbox in inboxes.values():
                inbox.close()
            raise StartupError(f"camera {cam.id}: cannot bind trigger_endpoint {cam.trigger_endpoint}: {exc}") from None
    return inboxes


def _open_source(cam, source: FrameSource | None = None) -> FrameSource:
    """The camera's configured source (or the one given instead), opened."""
    try:
        source = create_source(cam) if source is None else source
        source.open()
    except (SourceError, ValueError, OSError) as exc:
        raise StartupError(f"camera {cam.id}: {exc}") from None
    return source
