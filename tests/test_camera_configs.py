"""The camera configs shipped in configs/ stay valid, and camera sections refuse what
cannot work (discovery without consent, a camera named by nothing)."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.config import load_config
from pipeline.config.cameras import CameraConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, kind", [("camera-gige.yaml", "genicam"), ("camera-usb.yaml", "opencv"),
                                        ("camera-rtsp.yaml", "opencv")])
def test_shipped_camera_configs_are_valid(name, kind):
    config = load_config(ROOT / "configs" / name)
    assert [c.source.kind for c in config.cameras] == [kind]


@pytest.mark.parametrize("source, complaint", [
    ({"kind": "genicam", "serial": "ABC"}, "discovery"),
    ({"kind": "genicam"}, "address"),
    ({"kind": "genicam", "address": "10.0.0.2", "pixel_format": "Mono12"}, "pixel_format"),
    ({"kind": "opencv", "uri": "0", "reconnect_initial_s": 2, "reconnect_max_s": 1}, "reconnect_max_s"),
])
def test_camera_sections_refuse_what_cannot_work(source, complaint):
    with pytest.raises(ValidationError, match=complaint):
        CameraConfig.model_validate({"id": "cam0", "source": source})


def test_trigger_endpoint_must_be_a_zeromq_endpoint():
    with pytest.raises(ValidationError, match="trigger_endpoint"):
        CameraConfig.model_validate({"id": "cam0", "source": {"kind": "synthetic"}, "trigger_endpoint": "5601"})
