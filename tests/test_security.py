"""Security: CURVE-authenticated verdicts, key hygiene, no pickle/eval, loopback defaults.

CURVE tests use real key files (written by `pipeline curve-keys`' own function), the real
ZAP authenticator and the real pipeline; the subscribers are plain ZeroMQ SUB sockets,
as a C or Node gateway would be.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
import zmq

from pipeline.composition.app import Pipeline, StartupError
from pipeline.composition.assembly import build_parts
from pipeline.config import parse_config
from pipeline.config.models import PublisherConfig
from pipeline.parts.publishing import ZmqPublisher
from pipeline.parts.publishing.curve import load_server_keys, make_curve_client, read_key_file, write_key_pair
from pipeline.parts.publishing.zmq_publisher import PublisherError
from pipeline.service.cli import main
from tests.pipeline_helpers import ROOT, assert_exactly_once, make_config
from tests.waiting import wait_until
from tests.zmq_helpers import SubscriberRun

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def keys(tmp_path) -> Path:
    directory = tmp_path / "keys"
    for name in ("server", "gateway", "intruder"):
        write_key_pair(directory, name)
    (directory / "allowed").mkdir()
    (directory / "allowed" / "gateway.key").write_bytes((directory / "gateway.key").read_bytes())
    return directory


def curve_section(keys: Path) -> dict:
    return {"server_secret_key_file": str(keys / "server.key_secret"),
            "server_public_key_file": str(keys / "server.key"), "allowed_clients": [str(keys / "allowed")]}


def sub(context: zmq.Context, endpoint: str, keys: Path, client: str | None) -> zmq.Socket:
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 300)
    if client is not None:
        make_curve_client(sock, keys / "server.key", keys / f"{client}.key_secret")
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    return sock


def drain(sock: zmq.Socket) -> list[dict]:
    messages = []
    while True:
        try:
            messages.append(json.loads(sock.recv_multipart()[1]))
        except zmq.Again:
            return messages


def all_key_material(keys: Path) -> list[str]:
    found = []
    for file in keys.rglob("*.key*"):
        found += [k.decode() for k in read_key_file(file) if k]
    return found


def test_only_the_authorized_gateway_receives_verdicts(keys, free_tcp_endpoint, caplog):
    frames = 20
    caplog.set_level(logging.DEBUG)  # the ZAP handler logs each handshake at DEBUG
    context = zmq.Context()
    sockets = {name: sub(context, free_tcp_endpoint, keys, client)
               for name, client in (("gateway", "gateway"), ("intruder", "intruder"), ("plain", None))}
    try:
        config = make_config(free_tcp_endpoint, publisher={"curve": curve_section(keys)})
        pipeline = Pipeline(config, build_parts(config), max_frames=frames)
        pipeline.start()
        pipeline.captures[0].thread.join(60)
        code = pipeline.shutdown(timeout_s=10)
        got = {name: drain(sock) for name, sock in sockets.items()}
    finally:
        for sock in sockets.values():
            sock.close()
        context.term()
    assert code == 0
    assert_exactly_once([m for m in got["gateway"] if m["type"] == "verdict"], frames)
    assert got["intruder"] == [] and got["plain"] == []
    assert "DENIED" in caplog.text, "the intruder's handshake must have reached the authenticator"
    for key in all_key_material(keys):
        assert key not in caplog.text, "a CURVE key was logged"


def test_pipeline_subscribe_speaks_curve(keys):
    context = zmq.Context()
    cfg = PublisherConfig(endpoint="tcp://127.0.0.1:*", linger_ms=0, curve=curve_section(keys))
    publisher = ZmqPublisher.from_config(cfg, context, 30.0, ("scratch",))
    try:
        run = SubscriberRun(publisher.endpoint, curve=(str(keys / "server.key"), str(keys / "gateway.key_secret")),
                            timeout_s=5)
        wait_until(lambda: run.saw("[heartbeat] OK"), 5, 0.05, each=lambda: publisher.publish_heartbeat({"health": "OK"}))
        run.wait_for("[heartbeat] OK")
    finally:
        publisher.close()
        context.term()
    assert run.finish(10) == 0


def test_a_secret_key_readable_by_others_is_refused_naming_the_file(keys, free_tcp_endpoint):
    secret = keys / "server.key_secret"
    secret.chmod(0o644)
    cfg = PublisherConfig(endpoint=free_tcp_endpoint, linger_ms=0, curve=curve_section(keys))
    context = zmq.Context()
    try:
        with pytest.raises(PublisherError) as err:
            ZmqPublisher.from_config(cfg, context, 30.0, ("scratch",))
    finally:
        context.term()
    message = str(err.value)
    assert str(secret) in message and "0644" in message and "chmod 600" in message
    assert not any(key in message for key in all_key_material(keys))
    with pytest.raises(StartupError, match="chmod 600"):  # and `pipeline run` exits 2 with it
        build_parts(make_config(free_tcp_endpoint, publisher={"curve": curve_section(keys)}))


def test_mismatched_or_missing_keys_are_refused_by_file(keys, free_tcp_endpoint):
    wrong = {**curve_section(keys), "server_public_key_file": str(keys / "intruder.key")}
    with pytest.raises(ValueError, match="intruder.key does not hold the public key"):
        load_server_keys(PublisherConfig(curve=wrong).curve)
    empty = keys / "empty"
    empty.mkdir()
    context = zmq.Context()
    try:
        with pytest.raises(PublisherError, match="contains no \\*.key files"):
            ZmqPublisher.from_config(PublisherConfig(endpoint=free_tcp_endpoint, curve={
                **curve_section(keys), "allowed_clients": [str(empty)]}), context, 30.0, ("a",))
    finally:
        context.term()
    assert read_key_file(keys / "server.key_secret")[1].decode() not in repr(
        load_server_keys(PublisherConfig(curve=curve_section(keys)).curve))


def test_curve_keys_command_writes_a_private_secret_and_never_overwrites(tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["curve-keys", str(tmp_path), "line1"]) == 0
    assert os.stat(tmp_path / "line1.key_secret").st_mode & 0o777 == 0o600
    public, secret = read_key_file(tmp_path / "line1.key")
    assert public and secret is None  # the shareable file holds no secret
    assert read_key_file(tmp_path / "line1.key_secret")[1] not in out.getvalue().encode()
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["curve-keys", str(tmp_path), "line1"]) == 2


# --------------------------------------------------------------------------- code scan

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
UNSAFE_YAML = {"load", "unsafe_load", "full_load", "load_all", "unsafe_load_all", "full_load_all"}


def unsafe_constructs(source: str, filename: str = "<src>") -> list[str]:
    """Lines that import a pickle-like module, call eval/exec, load YAML unsafely or
    let numpy unpickle."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where} imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"{where} calls {func.id}()")
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and func.value.id == "yaml" and func.attr in UNSAFE_YAML):
                found.append(f"{where} calls yaml.{func.attr} (use yaml.safe_load)")
            if any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                found.append(f"{where} passes allow_pickle")
    return found


def test_the_scanner_catches_what_it_looks_for():
    planted = ("import pickle\nfrom marshal import loads\nx = eval('1')\nexec('y=1')\n"
               "import yaml\nyaml.load(s)\nimport numpy as np\nnp.load(f, allow_pickle=True)\n"
               "model.eval()\nyaml.safe_load(s)\nnp.load(f)\n")
    found = unsafe_constructs(planted)
    assert len(found) == 6, found  # model.eval(), safe_load and a plain np.load are fine


def test_no_pickle_and_no_eval_anywhere_in_the_package():
    files = sorted((ROOT / "pipeline").rglob("*.py"))
    assert len(files) > 20
    found = [hit for f in files for hit in unsafe_constructs(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]
    assert found == []


# --------------------------------------------------------------------------- listening addresses


def listen_addresses(node, path: str = "") -> list[tuple[str, str]]:
    """(key path, address) of every host/endpoint/bind/listen value in a config dump."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("host", "endpoint", "bind", "listen", "address") and isinstance(value, str):
                found.append((f"{path}{key}", value))
            found += listen_addresses(value, f"{path}{key}.")
    return found


def is_loopback(address: str) -> bool:
    if address.startswith(("ipc://", "inproc://")):
        return True
    host = urlparse(address).hostname if "://" in address else address
    return host in ("127.0.0.1", "localhost", "::1")


def test_every_listening_address_defaults_to_loopback():
    config = parse_config("cameras: [{id: cam0, source: {kind: synthetic}}]\nmodel: {path: m.onnx}\n")
    found = listen_addresses(config.model_dump(mode="json"))
    keys = {path for path, _ in found}
    assert {"publisher.endpoint", "http.host"} <= keys, found  # the scan sees what it must
    assert [(p, a) for p, a in found if not is_loopback(a)] == []
