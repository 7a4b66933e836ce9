"""Names that become paths, validated before any filesystem call (RELIABILITY R9).

Task names and aliases use the task spec's strict pattern (lower-case ASCII, digits, ``_.-``, first
character alphanumeric), so they are always one harmless path component: no ``/``, ``\\``, ``%``,
NUL, ``..`` or absolute paths can get through, encoded or not. Artifact file names follow a similar
pattern and must end in ``.json`` or ``.safetensors``. Paths are then joined under the root and every
component below the root is checked not to be a symlink, so a planted link cannot redirect a read.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from tasktune.registry.errors import UnsafeNameError
from tasktune.task.spec import NAME_PATTERN

_NAME_RE = re.compile(NAME_PATTERN)
# Artifact file names: one component, a safe stem and one of the two allowed suffixes.
FILE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}\.(json|safetensors)$"
_FILE_RE = re.compile(FILE_PATTERN)
ALLOWED_SUFFIXES = (".json", ".safetensors")
MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "weights.safetensors"
_VERSION_REF_RE = re.compile(r"^v?([0-9]{1,9})$")
_VERSION_DIR_RE = re.compile(r"^v([1-9][0-9]{0,8})$")
LATEST = "latest"


def _describe(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def check_name(value: object, what: str = "task name") -> str:
    """Return ``value`` if it is a valid task name or alias, else raise naming the rule."""
    # re.match's `$` also matches before a trailing newline, hence fullmatch.
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise UnsafeNameError(
            f"invalid {what} {_describe(value)}: expected 1-64 characters of a-z, 0-9, '_', '.', '-' "
            "starting with a letter or digit (no '/', '\\', '%', '..', spaces or NUL)"
        )
    return value


def check_alias(value: object) -> str:
    """An alias is a name that cannot be confused with a version reference (``3``, ``v3``, ``latest``)."""
    alias = check_name(value, "alias")
    if alias == LATEST or _VERSION_REF_RE.fullmatch(alias):
        raise UnsafeNameError(f"invalid alias {alias!r}: 'latest' and version numbers are reserved")
    return alias


def check_file_name(value: object) -> str:
    """An artifact file name: one path component ending in .json or .safetensors."""
    if not isinstance(value, str) or not _FILE_RE.fullmatch(value):
        raise UnsafeNameError(
            f"invalid artifact file name {_describe(value)}: expected one path component of letters, digits, "
            f"'_', '.', '-' ending in {' or '.join(ALLOWED_SUFFIXES)} (weights safetensors, metadata JSON)"
        )
    return value


class InvalidRefError(UnsafeNameError):
    """A version reference that is neither a number, 'latest' nor a valid alias."""

    def __init__(self, ref: object):
        super().__init__(
            f"invalid version reference {_describe(ref)}: expected a version number (1, 2, ... or v1), "
            "'latest' or an alias name"
        )


def parse_ref(ref: int | str) -> int | str:
    """``3``/``"3"``/``"v3"`` → 3; ``"latest"`` stays; anything else must be a valid alias name."""
    if isinstance(ref, bool):
        raise InvalidRefError(ref)
    if isinstance(ref, int):
        if ref < 1:
            raise InvalidRefError(ref)
        return ref
    if isinstance(ref, str):
        if ref == LATEST:
            return ref
        match = _VERSION_REF_RE.fullmatch(ref)
        if match:
            number = int(match.group(1))
            if number < 1:
                raise InvalidRefError(ref)
            return number
        return check_alias(ref)
    raise InvalidRefError(ref)


def version_dir_name(version: int) -> str:
    return f"v{version}"


def parse_version_dir(name: str) -> int | None:
    """``"v12"`` → 12; anything else (temp names, junk) → None."""
    match = _VERSION_DIR_RE.fullmatch(name)
    return int(match.group(1)) if match else None


def safe_join(root: Path, *parts: str) -> Path:
    """Join already-validated components under ``root`` and refuse symlinks below the root.

    The root itself may be a symlink (a user's choice); nothing inside it may be. Missing
    components are fine (the caller decides whether absence is an error).
    """
    path = root
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise UnsafeNameError(f"refusing path component {_describe(part)} under {root}")
        path = path / part
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            raise UnsafeNameError(f"refusing {path}: it is a symlink (registry paths must be real files)")
    return path
