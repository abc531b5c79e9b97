"""The open-file limit the daemon needs for its configured maxima, checked at start.

Owns one rule: every HTTP connection the endpoint may hold (`http.max_connections`) is a
descriptor, on top of a fixed reserve for the cameras, the model, ZeroMQ's own sockets
and pipes, gateways and the archive. Without this check, 1,000 idle connections at the
common default limit of 1024 starved everything else (a new gateway locked out, parts
failing their deadline). The soft limit is raised up to the hard one where that is
enough; otherwise start-up stops naming both numbers (systemd: LimitNOFILE=).
"""

from __future__ import annotations

import resource

from pipeline.composition.app import StartupError
from pipeline.config.models import PipelineConfig

RESERVE = 512  # cameras, model files, ZeroMQ sockets and pipes, gateways, archive, logs


def descriptors_needed(config: PipelineConfig) -> int:
    return RESERVE + (config.http.max_connections if config.http.enabled else 0)


def ensure_descriptors(config: PipelineConfig) -> int:
    """Raise the soft RLIMIT_NOFILE to what the config needs, or StartupError; the limit in force."""
    need = descriptors_needed(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        return need
    raise StartupError(f"open-file limit {soft} (hard {hard}) is below the {need} this config needs "
                       f"(http.max_connections {config.http.max_connections} + {RESERVE}); raise LimitNOFILE= "
                       "(the shipped unit sets 65536) or lower http.max_connections")
