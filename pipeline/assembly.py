"""Builds the pipeline's parts from the config: opens the model, the sources and the
PUB socket, warms the model up, and checks that the rules fit the model.

Owns the translation of every start-up failure into a `StartupError` that names the
file or key at fault, so `pipeline run` exits 2 with a message, never a traceback.
Everything opened so far is closed again when a later part fails.
"""

from __future__ import annotations

import contextlib
import logging

import zmq

from pipeline.annotate import annotate
from pipeline.app import Parts, StartupError
from pipeline.archive import ArchiveError, FailedPartArchive
from pipeline.backends import BackendChoice, choose_backend
from pipeline.backends.base import ModelError
from pipeline.backends.candidate_head import uses_candidate_head
from pipeline.backends.yolo_decode import decode, decode_candidates, to_detections
from pipeline.config.models import ModelConfig, PipelineConfig
from pipeline.imaging.letterbox import Letterboxer
from pipeline.publishing.zmq_publisher import PublisherError, ZmqPublisher
from pipeline.rules import RuleBook
from pipeline.sources import create_source
from pipeline.sources.base import SourceError
from pipeline.sources.triggers import TriggerInbox
from pipeline.warmup import warm_path

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


def make_decoder(model: ModelConfig, num_classes: int):
    """One image's output -> Detections: the candidate head's K x 6 rows when the backend
    runs the head, else the raw tensor with the same K cap applied on the host."""
    conf, iou, limit, k = model.confidence, model.iou, model.max_detections, model.max_candidates

    if uses_candidate_head(model):
        def decoder(raw, geometry):
            return to_detections(decode_candidates(raw, conf, iou, limit)[0], geometry)
    else:
        def decoder(raw, geometry):
            return to_detections(decode(raw, num_classes, conf, iou, limit, k)[0], geometry)

    return decoder


def build_parts(config: PipelineConfig) -> Parts:
    with contextlib.ExitStack() as undo:
        choice = open_chosen_backend(config.model)
        backend = choice.backend
        undo.callback(backend.close)
        check_rules(config, backend.class_names)
        backend.warmup(config.model.warmup_runs)
        transform, slot_pool, close_preprocess, frame_allocator = open_preprocess(config, backend)
        undo.callback(close_preprocess)
        sources = {}
        for cam in config.cameras:
            sources[cam.id] = _open_source(cam)
            undo.callback(sources[cam.id].close)
        context = zmq.Context()
        undo.callback(context.term)
        try:
            publisher = ZmqPublisher.from_config(config.publisher, context, config.budget_ms, backend.class_names)
        except PublisherError as exc:
            raise StartupError(str(exc)) from None
        undo.callback(publisher.close)  # before context.term runs, or term waits forever on its socket
        if not publisher.wait_for_subscriber(config.publisher.await_subscriber_ms / 1000):
            log.info("no subscriber yet on %s; starting anyway", config.publisher.endpoint)
        triggers = open_trigger_inboxes(config, context)
        for inbox in triggers.values():
            undo.callback(inbox.close)
        archive = open_archive(config, backend.class_names)
        if archive is not None:
            undo.callback(archive.close)
        parts = Parts(sources, backend, transform,
                      make_decoder(config.model, len(backend.class_names)), publisher, context,
                      extra_closers=[archive.close] if archive is not None else [], archive=archive,
                      slot_pool=slot_pool)
        parts.extra_closers.append(close_preprocess)
        parts.frame_allocator = frame_allocator
        parts.lend_frame_slots = archive is None  # the archive reads the raw image after publish
        parts.triggers = triggers
        parts.backend_choice = choice.why
        parts.extra_closers.extend(inbox.close for inbox in triggers.values())
        warm_path(parts, config)  # before READY: the first real parts pay no first-call costs
        undo.pop_all()
        names = ", ".join(backend.class_names[:8]) + (", ..." if len(backend.class_names) > 8 else "")
        log.info("backend %s, %d classes (%s), %d camera(s)", backend.name, len(backend.class_names), names, len(sources))
        return parts


def open_preprocess(config: PipelineConfig, backend):
    """(transform, slot pool or None, closer, frame allocator or None): the fused CUDA
    kernel writing device slots, with page-locked frame slots, when the backend takes
    device buffers (unless model.preprocess is cpu), else OpenCV."""
    on_gpu = backend.accepts_device_input
    mode = config.model.preprocess
    if mode == "gpu" and not on_gpu:
        raise StartupError(f"model.preprocess: gpu needs a GPU-resident backend, but {backend.name} takes host "
                           f"arrays; use backend tensorrt, or onnxruntime with providers [CUDAExecutionProvider] "
                           f"and pycuda installed (pip install '.[gpu]'), or preprocess: cpu")
    if mode == "cpu" or not on_gpu:
        return Letterboxer(backend.input_size), None, lambda: None, None
    from pipeline.app import slot_count
    from pipeline.gpu.cuda import CudaError
    from pipeline.gpu.preprocessing import GpuPreprocess

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


def _open_source(cam):
    try:
        source = create_source(cam)
        source.open()
    except (SourceError, ValueError, OSError) as exc:
        raise StartupError(f"camera {cam.id}: {exc}") from None
    return source
