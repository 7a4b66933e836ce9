"""Backbones: the embedded catalogue, offline loading, identity hashes and the device choice."""

from tasktune.backbones.catalog import DEFAULT_BACKBONES, EMBEDDED, EmbeddedBackbone, register
from tasktune.backbones.device import DeviceChoice, resolve_device
from tasktune.backbones.identity import BackboneIdentity
from tasktune.backbones.loading import Backbone, load_backbone

__all__ = [
    "DEFAULT_BACKBONES",
    "EMBEDDED",
    "Backbone",
    "BackboneIdentity",
    "DeviceChoice",
    "EmbeddedBackbone",
    "load_backbone",
    "register",
    "resolve_device",
]
