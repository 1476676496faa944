"""Secret files laid out and updated the way the kubelet updates a mounted Kubernetes Secret (its
AtomicWriter): every key is a symlink ``<key> -> ..data/<key>``, ``..data`` is a symlink to a
timestamped directory holding the files, and an update writes a new timestamped directory, points a
``..data_tmp`` symlink at it and renames that over ``..data`` (one atomic step), then removes the old
directory. A reader holding the path sees the old file or the new one, never a mix."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

_versions = itertools.count()


class MountedSecret:
    """A Secret's keys as files under ``root``; :meth:`update` replaces them all at once."""

    def __init__(self, root: Path, data: Mapping[str, str | bytes]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.update(data)

    def path(self, key: str) -> str:
        """The path the configuration names (through the key's symlink)."""
        return str(self.root / key)

    def update(self, data: Mapping[str, str | bytes]) -> float:
        """Write every key of ``data`` into a new version and swap ``..data`` to it; the
        :func:`time.monotonic` instant of the swap."""
        version = self.root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{next(_versions):09d}"
        version.mkdir()
        for key, value in data.items():
            (version / key).write_bytes(value.encode("utf-8") if isinstance(value, str) else value)
            (version / key).chmod(0o440)
        data_link = self.root / "..data"
        previous = os.readlink(data_link) if data_link.is_symlink() else None
        temporary = self.root / "..data_tmp"
        os.symlink(version.name, temporary)
        os.rename(temporary, data_link)
        swapped = time.monotonic()
        for key in data:
            link = self.root / key
            if not link.is_symlink():
                os.symlink(f"..data/{key}", link)
        if previous is not None:
            shutil.rmtree(self.root / previous)
        return swapped
