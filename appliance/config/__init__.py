"""The typed configuration: one schema, validated once, every error at once."""
from .load import config_from_dict, config_hash, load_config, parse_config
from .schema import Config, Point, Remote

DEFAULT_PATH = "/etc/appliance/appliance.toml"

__all__ = ["config_hash", "Config", "Point", "Remote", "load_config", "parse_config", "config_from_dict", "DEFAULT_PATH"]
