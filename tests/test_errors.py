"""One exception hierarchy (pipeline.core.errors): every error the package raises on purpose is a
`PipelineError`, and the reason of an ERROR verdict follows from the exception's type, per
stage. Real stages on real queues and threads, the real letterbox, the real demo model;
only the failing call is swapped for one that raises."""

from __future__ import annotations

import ast
import importlib
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.composition.assembly import make_decoder, open_backend
from pipeline.core.buffers import HostSlotPool
from pipeline.core.errors import PipelineError, reason_of
from pipeline.core.messages import Detections, EndOfStream, Frame, Job, Outcome, ReasonCode
from pipeline.core.protocol import ProtocolError
from pipeline.core.queues import StageQueue
from pipeline.core.telemetry import Telemetry
from pipeline.parts.backends.backend_api import BackendDeadline, BackendUnavailable
from pipeline.parts.decoding.yolo_decode import BadModelOutput
from pipeline.parts.preprocessing import BadFrame, Letterboxer
from pipeline.parts.rules import RuleBook
from pipeline.parts.sources.frame_source import LostFrame, SourceError
from pipeline.stages.decide import DecideStage
from pipeline.stages.infer import InferStage
from pipeline.stages.preprocess import PreprocessStage
from tests.fakes import WrappedBackend
from tests.pipeline_helpers import make_config

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_BASES = {"Exception", "ValueError", "RuntimeError", "OSError", "TypeError", "KeyError", "LookupError"}
# Below the errors layer (config) or about code, not frames (states): documented exceptions.
OUTSIDE = {"PipelineError", "ConfigError", "IllegalTransition"}


def test_every_exception_class_of_the_package_is_a_pipeline_error():
    loose = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef) or node.name in OUTSIDE:
                continue
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            if bases & BUILTIN_BASES and "PipelineError" not in bases:
                loose.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not loose, f"derive these from pipeline.core.errors.PipelineError: {loose}"


# Every PipelineError class whose verdict reason is not stage_error, and that reason; any
# class of the package not named here must carry stage_error (a new reason needs a line).
REASON_OF_CLASS = {
    "FrameError": ReasonCode.BAD_FRAME, "BadFrame": ReasonCode.BAD_FRAME, "LostFrame": ReasonCode.BAD_FRAME,
    "ModelOutputError": ReasonCode.BAD_OUTPUT, "BadModelOutput": ReasonCode.BAD_OUTPUT,
    "BackendUnavailable": ReasonCode.BACKEND_UNAVAILABLE, "BackendDeadline": ReasonCode.DEADLINE,
    "SourceError": ReasonCode.SOURCE_DOWN, "CameraRefused": ReasonCode.SOURCE_DOWN,
}
OPTIONAL_SDKS = {"pycuda", "tensorrt", "tritonclient", "gi"}  # modules that need them are skipped without them


def pipeline_error_classes() -> dict[str, type]:
    """Every PipelineError subclass of the package, by name, from every module importable here."""
    found: dict[str, type] = {}
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module_name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            assert exc.name is not None and exc.name.split(".")[0] in OPTIONAL_SDKS, exc
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, PipelineError) and value.__module__ == module_name:
                found[value.__name__] = value
    return found


def test_each_pipeline_error_class_carries_its_one_reason():
    classes = pipeline_error_classes()
    assert REASON_OF_CLASS.keys() <= classes.keys(), "a class named in the table is gone"
    wrong = {name: cls.reason for name, cls in classes.items()
             if cls.reason is not REASON_OF_CLASS.get(name, ReasonCode.STAGE_ERROR)}
    assert not wrong, f"reasons differ from the table: {wrong}"


# One instance of each reason a PipelineError carries, and a foreign exception: raised in
# any stage's handling of a frame, the verdict's reason follows from the type alone.
RAISED_IN_A_STAGE = [
    (BadFrame("frame has an empty size 0x0"), "bad_frame"),
    (LostFrame("no image arrived", None), "bad_frame"),
    (BadModelOutput("model output contains 3 NaN"), "bad_output"),
    (BackendUnavailable("triton: server not ready"), "backend_unavailable"),
    (BackendDeadline("triton took longer than 20 ms"), "deadline"),
    (SourceError("camera gone"), "source_down"),
    (ProtocolError("a PipelineError with the default reason"), "stage_error"),
    (RuntimeError("CUDA error 700"), "stage_error"),
]


@pytest.mark.parametrize("exc, reason", [
    (BadFrame("empty"), ReasonCode.BAD_FRAME), (LostFrame("no image", "p1"), ReasonCode.BAD_FRAME),
    (SourceError("gone"), ReasonCode.SOURCE_DOWN), (BadModelOutput("nan"), ReasonCode.BAD_OUTPUT),
    (BackendUnavailable("down"), ReasonCode.BACKEND_UNAVAILABLE), (BackendDeadline("slow"), ReasonCode.DEADLINE),
    (RuntimeError("driver"), ReasonCode.STAGE_ERROR),
])
def test_the_reason_follows_from_the_type(exc, reason):
    assert reason_of(exc) is reason
    assert isinstance(exc, PipelineError) is (reason is not ReasonCode.STAGE_ERROR)


def run_stage(stage, inbox: StageQueue, outbox: StageQueue, jobs: list[Job]) -> list[Job]:
    """Feed `jobs` and an end of stream through the stage's own thread; what came out."""
    inbox.put_many([*jobs, EndOfStream("test")])
    stage.start()
    out, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:
        item = outbox.get(0.1)
        if isinstance(item, EndOfStream):
            return out
        if item is not None:
            out.append(item)
    raise AssertionError(f"{stage.name} did not finish; got {out}")


def job(frame_id: int, image: np.ndarray) -> Job:
    return Job(Frame("cam0", frame_id, image, time.monotonic_ns(), time.time_ns()))


def queues() -> tuple[StageQueue, StageQueue]:
    return StageQueue("in", 16, lossless=True), StageQueue("out", 16, lossless=True)


@pytest.fixture(scope="module")
def backend():
    opened = open_backend(make_config("tcp://127.0.0.1:1").model)
    yield opened
    opened.close()


def preprocessed(backend, n: int) -> list[Job]:
    w, h = backend.input_size
    inbox, outbox = queues()
    pool = HostSlotPool((3, h, w), backend.input_dtype, n)
    stage = PreprocessStage(Letterboxer((w, h)), pool, inbox, outbox, Telemetry(["cam0"]), upstreams=1)
    return run_stage(stage, inbox, outbox, [job(i, np.full((h, w, 3), 90, np.uint8)) for i in range(n)])


@pytest.mark.parametrize("raised, reason", RAISED_IN_A_STAGE)
def test_preprocess_error_reason(raised, reason):
    def transform(image, out, bayer=None):
        raise raised

    inbox, outbox = queues()
    stage = PreprocessStage(transform, HostSlotPool((3, 8, 8), np.float32, 2), inbox, outbox, Telemetry(["cam0"]), 1)
    (got,) = run_stage(stage, inbox, outbox, [job(0, np.zeros((8, 8, 3), np.uint8))])
    assert got.verdict.outcome is Outcome.ERROR and got.verdict.reasons[0].code.value == reason
    assert stage.pool.available == 2  # the failed frame's slot went back


@pytest.mark.parametrize("raised, reason", RAISED_IN_A_STAGE)
def test_infer_backend_error_reason(backend, raised, reason):
    class Raising(WrappedBackend):  # the real backend, but this call raises
        def infer_tensors(self, tensors):
            raise raised

    jobs = preprocessed(backend, 2)
    inbox, outbox = queues()
    stage = InferStage(Raising(backend), inbox, outbox, Telemetry(["cam0"]), budget_ms=60_000, max_batch=2)
    got = run_stage(stage, inbox, outbox, jobs)
    assert [(j.verdict.outcome, j.verdict.reasons[0].code.value) for j in got] == [(Outcome.ERROR, reason)] * 2


@pytest.mark.parametrize("refusal", [BadModelOutput("model output contains 3 NaN"), ValueError("a foreign decoder's")])
def test_decide_decode_error_reason_is_bad_output(backend, refusal):
    class Refusing:  # a decoder that finds every image's output unusable
        def decode_batch(self, raw, geometries):
            return [refusal for _ in geometries]

    config = make_config("tcp://127.0.0.1:1")
    inbox, outbox = queues()
    telemetry = Telemetry(["cam0"])
    infer = InferStage(backend, inbox, outbox, telemetry, budget_ms=60_000)
    inferred = run_stage(infer, inbox, outbox, preprocessed(backend, 1))
    assert inferred[0].raw is not None and inferred[0].detections is None  # infer hands on the raw rows
    inbox, outbox = queues()
    decide = DecideStage(Refusing(), RuleBook(config.rules, backend.class_names), {"cam0": None}, inbox, outbox,
                         telemetry, 60_000, config.late_policy)
    (got,) = run_stage(decide, inbox, outbox, inferred)
    assert got.verdict.outcome is Outcome.ERROR and got.verdict.reasons[0].code is ReasonCode.BAD_OUTPUT
    assert got.marks[-1][0] == "decide" and (telemetry.stages["decide"].errors, telemetry.stages["infer"].errors) == (1, 0)


@pytest.mark.parametrize("raised, reason", RAISED_IN_A_STAGE)
def test_decide_error_reason(backend, raised, reason):
    class RaisingRules(RuleBook):  # the real rule book, whose judgement raises
        def judge(self, det, mm_per_px):
            raise raised

    config = make_config("tcp://127.0.0.1:1")
    rules = RaisingRules(config.rules, ("scratch",))
    inbox, outbox = queues()
    decoder = make_decoder(config.model, backend)
    stage = DecideStage(decoder, rules, {"cam0": None}, inbox, outbox, Telemetry(["cam0"]), 60_000, config.late_policy)
    jobs = [job(i, np.zeros((8, 8, 3), np.uint8)).evolve(detections=Detections.empty()) for i in range(2)]
    got = run_stage(stage, inbox, outbox, jobs)
    assert [(j.verdict.outcome, j.verdict.reasons[0].code.value) for j in got] == [(Outcome.ERROR, reason)] * 2
