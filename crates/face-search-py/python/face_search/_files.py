"""Writing files so that a failure half-way never leaves a broken one: the one way the package
writes the small files of its own (the drop-in's stamps, a sharded gallery's manifest and
labels); the engines' index files are written atomically by the native side."""

from __future__ import annotations

import os
import tempfile


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _share(path: str) -> None:
    """Gives a file the permissions of a plain new file (0666 less the umask): the engines'
    atomic save and mkstemp make 0600 files, which nodes running as another user of the
    shared folder could not read."""
    try:
        os.chmod(path, 0o666 & ~_umask())
    except OSError:
        pass


def _atomic_write(path: str, write) -> None:
    """Writes ``path`` through a temporary file in the same folder renamed over it."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _share(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)
