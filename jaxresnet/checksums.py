"""File checksums for the manifests that guard checkpoints and the data cache against damage."""

from __future__ import annotations

import zlib


def crc32(path) -> int:
    """CRC32 of a file's bytes, read in 4 MiB chunks."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc
