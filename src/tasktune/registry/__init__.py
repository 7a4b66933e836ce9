"""Versioned, immutable adaptation artifacts: manifests, a SQLite/SQLAlchemy store, aliases,
integrity checks, one-file export/import and PEFT export.

Typical use::

    reg = Registry("./tasktune-registry")
    version = reg.save("sentiment", "soft-prompt", backbone=identity, route="prompt-tuning",
                       tensors={"prompt_embeddings": emb}, metrics={"accuracy": 0.91})
    reg.set_alias("sentiment", "production", version)
    artifact = reg.load("sentiment", "production", expect_backbone=identity)
"""

from tasktune.registry.archive import MAX_MEMBERS
from tasktune.registry.artifact import Artifact, VersionInfo
from tasktune.registry.errors import BackboneMismatchError, IntegrityError, RegistryError, UnsafeNameError
from tasktune.registry.maintenance import Difference
from tasktune.registry.manifest import FORMAT, KINDS, ArtifactKind, FileEntry, Manifest
from tasktune.registry.peft_export import export_peft, peft_config_to_json
from tasktune.registry.store import DEFAULT_ROOT, Registry

__all__ = [
    "DEFAULT_ROOT",
    "FORMAT",
    "KINDS",
    "MAX_MEMBERS",
    "Artifact",
    "ArtifactKind",
    "BackboneMismatchError",
    "Difference",
    "FileEntry",
    "IntegrityError",
    "Manifest",
    "Registry",
    "RegistryError",
    "UnsafeNameError",
    "VersionInfo",
    "export_peft",
    "peft_config_to_json",
]
