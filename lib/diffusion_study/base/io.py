"""Atomic writes: a reader (the book build, another run, a resumed training) sees the old file or the new
one, never half of one. The one place the temporary-file-then-rename idiom lives."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False, mode: int = 0o644) -> Iterator[Path]:
    """Yield a uniquely named temporary path beside `path`; when the block ends without an exception,
    (fsync it and) rename it over `path` with permissions `mode`; else delete it and re-raise.

    Two writers never share a temporary file, and os.replace is atomic within one file system."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
