"""The page cache as the measurement scripts (peers.py, python_speed.py) need it: evict a file
so that the next open is cold, or read it through so that it is warm."""

import os


def files_of(path):
    """The file, or every file under a directory."""
    if os.path.isdir(path):
        return [os.path.join(r, f) for r, _, fs in os.walk(path) for f in sorted(fs)]
    return [path]


def evict(path):
    """Drops the file's pages from the page cache (a directory: every file in it); dirty pages
    are written first, since the kernel keeps those."""
    for f in files_of(path):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_through(path):
    """Reads the file (every file under a directory) from start to end, 1 MiB at a time."""
    for f in files_of(path):
        with open(f, "rb", buffering=0) as fh:
            while fh.read(1 << 20):
                pass
