"""`model.backend: triton` against a real Triton Inference Server (the binary bundled in
nvidia-pytriton, serving the demo ONNX through its Python backend; tests/triton_server.py).

One server per session, on loopback and free ports, from a repository written by
`pipeline export-triton`; the tests run the real pipeline (threads, queues, ZeroMQ) and
listen with an independent subscriber.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the `triton` extra is not installed")

from pipeline.composition.app import Pipeline  # noqa: E402
from pipeline.composition.assembly import build_parts, make_decoder  # noqa: E402
from pipeline.config.model import model_config  # noqa: E402
from pipeline.parts.backends import create_backend  # noqa: E402
from pipeline.parts.modelfile.model_info import ModelError  # noqa: E402
from tests.pipeline_helpers import DEMO_MODEL, VerdictCollector, assert_exactly_once, make_config  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.triton_server import (  # noqa: E402
    TritonEnvUnavailable,
    TritonServer,
    export_python_repository,
    triton_env,
)
from tests.waiting import wait_until  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

SHED = ("queue_full", "expired", "no_buffer")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    try:
        env = triton_env()
    except TritonEnvUnavailable as exc:
        pytest.skip(f"no Triton server here: {exc}")
    repo = tmp_path_factory.mktemp("triton-repo")
    export_python_repository(repo, DEMO_MODEL, max_batch=8, delay_us=2000)
    # A second name for the same model whose batcher waits long enough to group the
    # requests of two pipelines on a loaded 2-core machine.
    export_python_repository(repo, DEMO_MODEL, max_batch=8, delay_us=30000, name="demo_shared")
    # The same graph served as it is, without the candidate head: the client caps K on the host.
    export_python_repository(repo, DEMO_MODEL, 8, 2000, "demo_raw", "--raw-output")
    srv = TritonServer(env, repo, tmp_path_factory.mktemp("triton-log") / "tritonserver.log")
    try:
        srv.start()
    except TritonEnvUnavailable as exc:
        pytest.skip(str(exc))
    yield srv
    srv.stop()


def triton_model(server, **over) -> dict:
    triton = {"url": server.grpc_url, "model_name": "demo", "connect_timeout_s": 20, **over.pop("triton", {})}
    return {"path": str(DEMO_MODEL), "input_size": 416, "backend": "triton", "triton": triton, **over}


def server_regions(server) -> set[str]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        return set(client.get_system_shared_memory_status(as_json=True).get("regions", {}))
    finally:
        client.close()


def run_frames(config, frames: int, collector: VerdictCollector, cameras: list[str]) -> Pipeline:
    pipeline = Pipeline(config, build_parts(config), max_frames=frames)
    pipeline.start()
    for capture in pipeline.captures:
        capture.thread.join(120)
    assert pipeline.shutdown(timeout_s=15) == 0
    assert collector.wait_for({c: frames for c in cameras}, timeout_s=15)
    return pipeline


def by_frame(verdicts: list[dict]) -> dict[int, dict]:
    return {v["frame_id"]: v for v in verdicts}


def detections(v: dict) -> list:
    return sorted((d["class"], tuple(round(x, 1) for x in d["box"])) for d in v["detections"])


@pytest.mark.parametrize("protocol,shared_memory", [("grpc", "auto"), ("grpc", "none"), ("http", "auto")])
def test_same_verdicts_as_the_local_backend(server, free_tcp_endpoint, protocol, shared_memory):
    frames, results = 40, {}
    url = server.grpc_url if protocol == "grpc" else server.http_url
    models = {"local": {"path": str(DEMO_MODEL), "input_size": 416, "threads": 1},
              "triton": triton_model(server, triton={"url": url, "protocol": protocol, "shared_memory": shared_memory})}
    for name, model in models.items():
        collector = VerdictCollector(free_tcp_endpoint)
        try:
            run_frames(make_config(free_tcp_endpoint, fps=15, model=model), frames, collector, ["cam0"])
        finally:
            collector.close()
        assert_exactly_once(collector.verdicts["cam0"], frames)
        results[name] = by_frame(collector.verdicts["cam0"])
    both = [f for f in range(frames) if all(results[n][f]["verdict"] in ("PASS", "FAIL") for n in results)]
    assert len(both) >= frames * 3 // 4, "too many frames shed to compare"
    for f in both:
        local, remote = results["local"][f], results["triton"][f]
        assert (remote["verdict"], detections(remote)) == (local["verdict"], detections(local)), f"frame {f}"
    assert {results["local"][f]["verdict"] for f in both} == {"PASS", "FAIL"}  # the demo has both
    for f in range(frames):
        for name in results:
            if results[name][f]["verdict"] == "NOT_INSPECTED":
                assert results[name][f]["reasons"][0]["code"] in SHED


def test_shared_memory_regions_are_registered_and_removed(server):
    before = server_regions(server)
    backend = create_backend(model_config(**triton_model(server, max_batch=4)))
    try:
        ours = server_regions(server) - before
        assert len(ours) == 2 and all(name.startswith("inspect_") for name in ours)
        assert "(shm)" in backend.name
        out = backend.infer_tensors_within([np.zeros((3, 416, 416), np.float32)] * 3, 5.0)
        assert out.shape == (3, 3000, 6)  # the candidate head's K x 6 rows an image
    finally:
        backend.close()
    assert server_regions(server) - before == set()


def test_the_served_head_is_recognised_and_decoded_like_the_local_backends(server):
    """The export's candidate head (K x 6 rows) and the raw graph (the K cap on the host)
    decode to the same detections as ONNX Runtime in-process on the same frames."""
    frames = [render(i) for i in range(12)]
    local = create_backend(model_config(path=str(DEMO_MODEL), input_size=416, threads=1, max_batch=4))
    headed, raw = (create_backend(model_config(**triton_model(server, max_batch=4, triton={"model_name": name})))
                   for name in ("demo", "demo_raw"))
    try:
        assert (local.emits_candidates, headed.emits_candidates, raw.emits_candidates) == (True, True, False)
        assert headed.class_names == raw.class_names == local.class_names == ("scratch", "spot", "crack")
        found = {b.name: detect_all(b, frames) for b in (local, headed, raw)}
    finally:
        for backend in (local, headed, raw):
            backend.close()
    expected = found[local.name]
    assert sum(len(d) for d in expected) > 0, "the demo frames have defects to find"
    for name, detections in found.items():
        assert detections == expected, name


def render(frame_id: int) -> tuple[np.ndarray, object]:
    from pipeline.parts.preprocessing.letterbox import Letterboxer
    from pipeline.parts.sources.synthetic import SyntheticSource

    image = SyntheticSource(width=640, height=480, seed=3, defect_probability=0.8).render(frame_id).image
    tensor = np.empty((3, 416, 416), np.float32)
    geometry = Letterboxer((416, 416))(image, tensor)
    return tensor, geometry


def detect_all(backend, frames) -> list[list[tuple]]:
    decoder = make_decoder(model_config(path=str(DEMO_MODEL), input_size=416), backend)
    out = []
    for tensor, geometry in frames:
        dets = decoder(np.array(backend.infer_tensors([tensor])), geometry)  # a batch of one
        out.append([(int(c), round(float(s), 3), *(round(float(v), 1) for v in box))
                    for c, s, box in zip(dets.class_ids, dets.scores, dets.boxes)])
    return out


def test_the_served_model_is_checked_against_the_config(server):
    with pytest.raises(ModelError, match="max_batch_size is 8, but model.max_batch is 16"):
        create_backend(model_config(**triton_model(server, max_batch=16)))
    with pytest.raises(ModelError, match="expects 416x416"):
        create_backend(model_config(**{**triton_model(server), "input_size": 640}))
    with pytest.raises(ModelError, match="4 class names"):
        create_backend(model_config(**{**triton_model(server), "class_names": ["a", "b", "c", "d"]}))
    with pytest.raises(ModelError, match="not ready within"):
        create_backend(model_config(**triton_model(server, triton={"model_name": "absent", "connect_timeout_s": 0.5})))


def test_two_pipelines_share_the_servers_dynamic_batcher(server, free_tcp_endpoint):
    """Two pipelines (two line PCs) send batch 1 each; the server groups their requests."""
    endpoints = [free_tcp_endpoint, f"tcp://127.0.0.1:{free_port()}"]
    before = batch_metrics(server, "demo_shared")
    frames, collectors, threads, errors = 30, [VerdictCollector(e) for e in endpoints], [], []

    def one(endpoint, collector):
        try:
            config = make_config(endpoint, fps=15, model=triton_model(server, triton={"model_name": "demo_shared"}))
            run_frames(config, frames, collector, ["cam0"])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    try:
        threads = [threading.Thread(target=one, args=(e, c)) for e, c in zip(endpoints, collectors)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(200)
        assert not errors, errors
        for collector in collectors:
            assert_exactly_once(collector.verdicts["cam0"], frames)
    finally:
        for collector in collectors:
            collector.close()
    inferences, executions = (a - b for a, b in zip(batch_metrics(server, "demo_shared"), before))
    assert inferences >= frames  # most frames went through the server, none was lost (above)
    assert inferences > executions, f"{inferences} inferences in {executions} executions: no batch > 1"


def batch_metrics(server, model: str) -> tuple[int, int]:
    """(inferences, executions) from Triton's Prometheus endpoint: their ratio is the mean batch."""
    text = server.metrics()

    def value(metric: str) -> int:
        match = re.search(rf'^{metric}{{model="{model}",version="1"}} (\d+)', text, re.M)
        return int(match.group(1)) if match else 0

    return value("nv_inference_count"), value("nv_inference_exec_count")


def test_server_killed_and_restarted_mid_run(server, free_tcp_endpoint):
    """Every part gets a verdict through the outage; the pipeline recovers by itself."""
    frames = 150
    model = triton_model(server, on_backend_error={"action": "continue"},
                         triton={"reconnect_initial_s": 0.1, "reconnect_max_s": 0.5})
    config = make_config(free_tcp_endpoint, fps=15, model=model)
    collector = VerdictCollector(free_tcp_endpoint)
    before = server_regions(server)
    pipeline = Pipeline(config, build_parts(config), max_frames=frames)
    try:
        pipeline.start()
        assert collector.wait_for({"cam0": 20}, timeout_s=60)
        server.kill()
        assert wait_until(lambda: any(reason(v) == "backend_unavailable" for v in collector.verdicts["cam0"]), 30)
        assert collector.wait_for_heartbeat(10, lambda hb: hb["health"] == "DEGRADED") is not None
        outage_end = len(collector.verdicts["cam0"])
        server.start()
        assert wait_until(lambda: any(v["verdict"] in ("PASS", "FAIL") for v in collector.verdicts["cam0"][outage_end:]), 60)
        assert collector.wait_for_heartbeat(10, lambda hb: hb["health"] == "OK") is not None
        assert len(server_regions(server) - before) == 2, "the regions were registered again"
        for capture in pipeline.captures:
            capture.thread.join(120)
    finally:
        code = pipeline.shutdown(timeout_s=15)
        collector.wait_for({"cam0": frames}, timeout_s=15)
        collector.close()
    assert code == 0
    verdicts = collector.verdicts["cam0"]
    assert_exactly_once(verdicts, frames)
    reasons = {reason(v) for v in verdicts if v["verdict"] == "ERROR"}
    assert "backend_unavailable" in reasons and reasons <= {"backend_unavailable", "deadline"}
    assert server_regions(server) - before == set(), "regions left on the server after stop"


def reason(verdict: dict) -> str | None:
    return verdict["reasons"][0]["code"] if verdict["reasons"] else None


