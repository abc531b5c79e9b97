"""Configuration: the YAML schema (`models`) and its loader (`loader`). Bottom layer."""

from pipeline.config.loader import ConfigError, load_config, parse_config
from pipeline.config.models import PipelineConfig

__all__ = ["ConfigError", "PipelineConfig", "load_config", "parse_config"]
