"""Compression bombs built without ever holding their decoded size in memory (tests and benchmarks/bench_bombs)."""

from __future__ import annotations

import zlib

import brotli

MIB = 1024 * 1024
_ZEROS = b"\0" * MIB


def gzip_stream(size: int, level: int = 9, wbits: int = zlib.MAX_WBITS | 16) -> bytes:
    """gzip (or with `wbits=zlib.MAX_WBITS`, zlib/deflate) of `size` zero bytes, compressed a MiB at a time."""
    packer = zlib.compressobj(level, zlib.DEFLATED, wbits)
    parts = [packer.compress(_ZEROS) for _ in range(size // MIB)]
    parts.append(packer.compress(b"\0" * (size % MIB)))
    parts.append(packer.flush())
    return b"".join(parts)


def gzip_bomb(size: int, layers: int = 1) -> bytes:
    """`layers` of gzip around `size` zero bytes: `Content-Encoding: gzip[, gzip…]`."""
    body = gzip_stream(size)
    for _ in range(layers - 1):
        body = zlib.compress(body, 9, wbits=zlib.MAX_WBITS | 16)
    return body


def deflate_bomb(size: int) -> bytes:
    """`Content-Encoding: deflate` (zlib-wrapped) around `size` zero bytes."""
    return gzip_stream(size, wbits=zlib.MAX_WBITS)


def brotli_bomb(size: int) -> bytes:
    """brotli of `size` zero bytes, compressed a MiB at a time (`Content-Encoding: br`)."""
    packer = brotli.Compressor(quality=5)
    parts = [packer.process(_ZEROS) for _ in range(size // MIB)]
    parts.append(packer.finish())
    return b"".join(parts)
