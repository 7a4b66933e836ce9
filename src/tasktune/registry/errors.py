"""Registry errors. Every message names the task, version or file and, where it applies, what was
expected against what was found, so a user can act on it without reading a traceback."""

from __future__ import annotations

from tasktune.errors import TaskTuneError


class RegistryError(TaskTuneError):
    """A registry operation cannot proceed: bad name, unknown version or alias, bad archive, ..."""


class IntegrityError(RegistryError):
    """Stored bytes do not match what was recorded (hash, size, unexpected or forbidden file)."""


class UnsafeNameError(RegistryError):
    """A task, alias or file name could escape the registry folder or is not allowed."""


class BackboneMismatchError(RegistryError):
    """An adaptation is being loaded onto a backbone other than the one it was made for."""
