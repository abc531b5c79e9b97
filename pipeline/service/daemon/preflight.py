"""What `pipeline run` refuses, checked before anything starts, so that `pipeline
check-config` refuses exactly the same configs with the same messages (exit 2).

Owns the checks that need more than the config's own schema: the publisher endpoint's
form, the CURVE key files (present, well-formed, secret key private), that each camera's
source kind can be imported (an optional SDK such as Aravis), that a replay path exists
and holds images, and that the archive path is writable. Nothing is bound or opened for
long: check-config may run beside a daemon that holds the ports.
What crosses the boundary: a `PipelineConfig` in; nothing, or a `ConfigError` naming
every problem found, out.
"""

from __future__ import annotations

import re

from pipeline.config import ConfigError, PipelineConfig
from pipeline.config.cameras import CameraConfig
from pipeline.config.sources import ReplaySourceConfig
from pipeline.parts.archive import ArchiveError, check_writable
from pipeline.parts.publishing.curve import CurveKeyError, load_allowed_clients, load_server_keys
from pipeline.parts.sources import create_source
from pipeline.parts.sources.frame_source import SourceError
from pipeline.parts.sources.replay import ReplaySource

_TCP = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[^:\[\]/\s]+):(\*|[0-9]{1,5})$")
_OTHER = re.compile(r"^(ipc|inproc)://\S+$")


def preflight(config: PipelineConfig) -> None:
    """ConfigError listing every reason `run` would refuse this config; None if none."""
    problems = [p for p in (_endpoint_problem(config.publisher.endpoint), _curve_problem(config)) if p]
    problems += [p for camera in config.cameras if (p := _camera_problem(camera))]
    if config.archive.enabled:
        try:
            check_writable(config.archive.path)
        except ArchiveError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))


def _endpoint_problem(endpoint: str) -> str:
    match = _TCP.match(endpoint)
    if match and (match.group(2) == "*" or int(match.group(2)) <= 65535):
        return ""
    if _OTHER.match(endpoint):
        return ""
    return (f"publisher.endpoint {endpoint!r} is not an endpoint: use tcp://HOST:PORT (PORT 0-65535 or *), "
            "ipc://PATH or inproc://NAME")


def _curve_problem(config: PipelineConfig) -> str:
    curve = config.publisher.curve
    if curve is None:
        return ""
    try:
        load_server_keys(curve)
        load_allowed_clients(curve.allowed_clients)
    except CurveKeyError as exc:
        return f"publisher.curve: {exc}"
    return ""


def _camera_problem(camera: CameraConfig) -> str:
    try:
        if isinstance(camera.source, ReplaySourceConfig):
            source = ReplaySource.from_config(camera)
            source.open()  # a missing path or a folder without images is refused here
            source.close()
        else:
            create_source(camera)  # imports the source's SDK: a missing optional dependency shows
    except SourceError as exc:
        message = str(exc)
        return message if message.startswith(f"camera {camera.id}") else f"camera {camera.id}: {message}"
    return ""
