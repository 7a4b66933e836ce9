"""File-level safety: atomic folder writes, hashing, and refusing anything that is not a regular
``.json`` or ``.safetensors`` file before a single byte of it is interpreted (RELIABILITY R5-R7).

Nothing here needs torch, so ``verify`` stays cheap: a safetensors header is parsed by hand
(8-byte little-endian length + JSON) to check a file's structure without loading its tensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tasktune.fsutil import fsync_path  # noqa: F401  (re-exported)
from tasktune.registry.errors import IntegrityError
from tasktune.registry.names import ALLOWED_SUFFIXES, check_file_name

try:  # POSIX: an advisory lock tells gc whether a temp folder's writer is still alive.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_CHUNK = 1 << 22
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
TMP_PREFIX = "w-"
ORPHAN_PREFIX = "orphan-"
LOCK_SUFFIX = ".lock"
PENDING_LOCK_SUFFIX = ".lock-new"
GRACE_S = 60.0


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of a file, streamed."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def write_bytes_durably(path: Path, data: bytes) -> None:
    with path.open("xb") as fh:  # "x": never overwrite anything
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def check_regular_file(path: Path) -> os.stat_result:
    """Refuse symlinks, devices, fifos and folders; refuse forbidden suffixes by name, before reading.

    Pickle-based formats (.bin, .pt, .pth, .pkl, .ckpt, ...) are never opened: they can run code.
    """
    if not path.name.endswith(ALLOWED_SUFFIXES):
        raise IntegrityError(
            f"refusing {path}: only .json and .safetensors files are allowed in an artifact "
            "(pickle-based weight files such as .bin/.pt/.pkl/.ckpt are never read)"
        )
    check_file_name(path.name)
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise IntegrityError(f"refusing {path}: it is {what}")
    return st


def check_safetensors_header(path: Path, size: int) -> dict:
    """Validate the safetensors framing without torch; returns the header (tensor name → info)."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise IntegrityError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", raw)
        if length > min(_MAX_HEADER, size - 8):
            raise IntegrityError(f"{path}: not a safetensors file (header length {length}, file size {size})")
        try:
            header = json.loads(fh.read(length))
        except (ValueError, UnicodeDecodeError) as err:
            raise IntegrityError(f"{path}: not a safetensors file (header is not JSON: {err})") from err
    if not isinstance(header, dict):
        raise IntegrityError(f"{path}: not a safetensors file (header is not a JSON object)")
    data_len = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        valid = isinstance(offsets, list) and len(offsets) == 2
        if not (valid and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise IntegrityError(f"{path}: tensor {name!r} has invalid data offsets {offsets!r}")
    return header


def verify_file(path: Path, sha256: str, size: int) -> None:
    """Type check, size check, hash check — in that order, so nothing wrong is ever hashed twice."""
    st = check_regular_file(path)
    if st.st_size != size:
        raise IntegrityError(
            f"{path}: size is {st.st_size} bytes but manifest says {size}, corrupted file refused"
        )
    actual, _ = sha256_file(path)
    if actual != sha256:
        raise IntegrityError(
            f"{path}: sha256 mismatch (manifest {sha256[:16]}…, file {actual[:16]}…); refusing corrupted file"
        )


def scan_artifact_folder(folder: Path, expected: set[str]) -> None:
    """Every entry must be an expected, regular, allowed file; anything else is refused by name."""
    if not folder.is_dir() or folder.is_symlink():
        raise IntegrityError(f"{folder}: artifact folder is missing or not a real folder")
    for entry in sorted(folder.iterdir()):
        check_regular_file(entry)  # forbidden suffix / symlink first: the clearer message
        if entry.name not in expected:
            raise IntegrityError(f"{entry}: unexpected file, not listed in the manifest; artifact refused")
    missing = sorted(expected - {p.name for p in folder.iterdir()})
    if missing:
        raise IntegrityError(f"{folder}: files listed in the manifest are missing: {missing}")


class TempFolder:
    """A private folder under ``<root>/tmp`` for one write, locked while its writer lives.

    gc removes temp folders whose lock it can take: their writer has crashed (the kernel drops an
    flock when the process dies, even on SIGKILL), or finished without cleaning up.
    """

    def __init__(self, tmp_root: Path, label: str):
        name = f"{TMP_PREFIX}{label}-{uuid.uuid4().hex[:12]}"
        self.path = tmp_root / name
        self.lock_path = tmp_root / f"{name}{LOCK_SUFFIX}"
        # The lock is taken under a provisional name and renamed (the flock follows the inode), so
        # a ``.lock`` file that gc finds unlocked can only belong to a dead or finished writer.
        pending = tmp_root / f"{name}{PENDING_LOCK_SUFFIX}"
        self._lock_fd: int | None = os.open(pending, os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o600)
        if fcntl is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        os.rename(pending, self.lock_path)
        self.path.mkdir()

    def close(self) -> None:
        """Remove what is left (nothing, after a successful rename) and release the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.lock_path.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def stale_temp_entries(tmp_root: Path, grace_s: float = GRACE_S) -> Iterator[Path]:
    """Temp entries whose writer is gone, each folder followed by its lock file.

    A live writer holds the flock on ``<name>.lock`` from before ``<name>/`` exists until after it
    is gone, so a free lock (or a folder without one) marks an abandoned write. Only a provisional
    lock (a writer killed between creating and locking it) needs ``grace_s`` to be told apart from
    a writer in that very window. Orphans moved aside by a committer are always stale.
    """
    if not tmp_root.is_dir():
        return
    done: set[str] = set()
    for entry in sorted(tmp_root.iterdir()):
        if entry.name in done:
            continue
        if entry.name.startswith(ORPHAN_PREFIX):
            yield entry
        elif entry.name.endswith(PENDING_LOCK_SUFFIX):
            if _older_than(entry, grace_s) and _lock_is_free(entry):
                yield entry
        elif entry.name.endswith(LOCK_SUFFIX):
            if _lock_is_free(entry):
                yield entry
        else:
            lock = tmp_root / f"{entry.name}{LOCK_SUFFIX}"
            if not lock.exists() or _lock_is_free(lock):
                done.add(lock.name)
                yield entry
                if lock.exists():
                    yield lock


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.lstat().st_mtime > seconds
    except FileNotFoundError:
        return False


def _lock_is_free(lock: Path) -> bool:
    if fcntl is None:  # pragma: no cover - without flock, only clearly old leftovers are stale
        return _older_than(lock, 3600)
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def remove_path(path: Path) -> None:
    """Remove a file, symlink or folder tree without following symlinks."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        # rmtree does not follow symlinks inside; read-only files go as long as the folder is writable.
        shutil.rmtree(path)
