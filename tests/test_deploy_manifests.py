"""deploy/ (kustomize): every manifest validates offline against the Kubernetes schemas
(kubernetes-validate), the rendered site (`kubectl kustomize`, when kubectl is here)
holds what the pipeline relies on, and each line's ConfigMap is a valid pipeline config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.config import parse_config
from tests.pipeline_helpers import ROOT

kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.32"


def manifests() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml" and p.name != "line.yaml")


@pytest.mark.parametrize("path", manifests(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_each_manifest_validates_against_the_kubernetes_schema(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kv.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError naming the field


def test_every_kustomization_lists_files_that_exist():
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text())
        listed = data.get("resources", []) + [f for g in data.get("configMapGenerator", []) for f in g["files"]]
        for entry in listed:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry} is missing"


@pytest.mark.parametrize("line", sorted(p.parent.name for p in DEPLOY.glob("overlays/*/line.yaml")))
def test_each_line_config_is_a_valid_pipeline_config_for_the_triton_service(line):
    path = DEPLOY / "overlays" / line / "line.yaml"
    config = parse_config(path.read_text(), source=str(path))
    assert config.model.triton is not None and config.model.backend.value == "triton"
    assert config.model.triton.url == "triton:8001"
    assert config.http.host == "0.0.0.0" and config.http.port == 9108
    assert config.publisher.curve is not None and str(config.archive.path).startswith("/var/lib/inspection-pipeline")


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (for `kubectl kustomize`) is not installed")
    done = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def named(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_the_rendered_site_validates_and_references_what_it_renders(rendered):
    for doc in rendered:
        kv.validate(doc, K8S_VERSION, strict=True)
    kinds = {d["kind"] for d in rendered}
    assert {"Namespace", "Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim",
            "HorizontalPodAutoscaler"} <= kinds
    deployments = named(rendered, "Deployment")
    assert {"pipeline-line-a", "pipeline-line-b", "triton"} <= set(deployments)
    for deployment in deployments.values():
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        for volume in volumes:
            for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret"),
                              ("PersistentVolumeClaim", "persistentVolumeClaim")):
                if key in volume:
                    ref = volume[key].get("name") or volume[key].get("secretName") or volume[key].get("claimName")
                    assert ref in named(rendered, kind), f"{deployment['metadata']['name']}: no {kind} {ref}"
    hpa = named(rendered, "HorizontalPodAutoscaler")["triton"]
    assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "triton_queue_latency_us"


@pytest.mark.parametrize("name", ["pipeline-line-a", "pipeline-line-b", "triton"])
def test_pods_are_non_root_read_only_on_a_gpu_probed_and_scraped(rendered, name):
    pod = named(rendered, "Deployment")[name]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
    for container in spec.get("initContainers", []) + spec["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
    main = spec["containers"][0]
    assert main["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert {"livenessProbe", "readinessProbe"} <= main.keys()
    if name.startswith("pipeline"):
        assert main["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
        # start-up is bounded by READY, as long as systemd waits for READY=1
        startup = main["startupProbe"]
        assert startup["httpGet"]["path"] == "/readyz"
        unit = (ROOT / "systemd" / "inspection-pipeline.service").read_text()
        assert f"TimeoutStartSec={startup['periodSeconds'] * startup['failureThreshold']}" in unit
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        archive = next(v for v in spec["volumes"] if v["name"] == mounts["/var/lib/inspection-pipeline/archive"])
        assert "persistentVolumeClaim" in archive
