"""Proxied images kept on disk in the data folder, the least recently used going first once
the folder is over its bound. Files are named by the hash of the image's address, so several
instances sharing a data folder share the cache (each write is atomic)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .fetch import IMAGE_TYPES, Image

log = logging.getLogger("medianest.images")
_TYPE_OF_EXTENSION = {extension: kind for kind, extension in IMAGE_TYPES.items()}


@dataclass(frozen=True)
class CacheUsage:
    files: int
    bytes: int


class ImageDiskCache:
    """`get(url)` / `put(url, image)` on a folder of at most `max_bytes` of images."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    @staticmethod
    def key(url: str) -> str:
        return hashlib.sha256(url.encode()).hexdigest()

    async def get(self, url: str) -> Image | None:
        """The cached image of `url`, or None; a hit counts as a use (kept longer)."""
        return await asyncio.to_thread(self._get, self.key(url))

    async def put(self, url: str, image: Image) -> None:
        """Store `image`, then evict the least recently used files until under the bound."""
        await asyncio.to_thread(self._put, self.key(url), image)

    async def usage(self) -> CacheUsage:
        entries = await asyncio.to_thread(self._entries)
        return CacheUsage(len(entries), sum(size for _, size, _ in entries))

    def _get(self, key: str) -> Image | None:
        for extension, kind in _TYPE_OF_EXTENSION.items():
            path = self.folder / f"{key}.{extension}"
            try:
                body = path.read_bytes()
                os.utime(path)  # its age is its last use: the least recently used go first
            except FileNotFoundError:
                continue  # not cached, or evicted meanwhile
            return Image(body, kind)
        return None

    def _put(self, key: str, image: Image) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(image.body)
            os.replace(temporary, self.folder / f"{key}.{image.extension}")
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries = []
        try:
            with os.scandir(self.folder) as scan:
                for entry in scan:
                    if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                        continue  # a write in progress, or not ours
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    entries.append((stat.st_mtime, stat.st_size, Path(entry.path)))
        except FileNotFoundError:
            return []
        return entries

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda entry: entry[0])
        total = sum(size for _, size, _ in entries)
        evicted = 0
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            evicted += 1
        if evicted:
            log.debug(
                "image cache trimmed",
                extra={"evicted": evicted, "cache_bytes": total, "max_bytes": self.max_bytes},
            )
