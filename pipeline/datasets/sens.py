"""ScanNet's raw RGB-D stream ``<scene>.sens`` (SensReader format, version 4): read and write.

Layout, little-endian throughout. Header: version u32 (4), sensor-name length u64 and its bytes,
four f32[4,4] (colour intrinsics, colour extrinsics, depth intrinsics, depth extrinsics), colour
and depth compression i32 (2 = JPEG, 1 = zlib-compressed uint16), colour width and height u32,
depth width and height u32, depth shift f32 (raw units per metre, 1000) and the frame count
u64. Then each frame: a 96-byte frame header (camera-to-world f32[4,4], colour and depth
timestamps u64, colour and depth payload sizes u64) followed by the two payloads. IMU records
follow the frames; they are not read.

:class:`SensFile` indexes the frames by reading only each 96-byte frame header and seeking over
the payloads, so a frame is decoded only when :meth:`SensFile.read_frame` asks for it. Every
defect of the file (truncated, wrong version, unknown compression, a payload that does not
decode) is a one-line :class:`~pipeline.errors.SceneError` naming the file.

:func:`color_image` decodes every colour frame of the ScanNet reader, from a ``.sens`` payload or
an exported JPEG alike: asked for a smaller size, it lets libjpeg decode at 1/2, 1/4 or 1/8 scale
(JPEG draft mode, the largest reduction that stays at least that size) before the bilinear
resize, so a 1296x968 frame stored at 320x240 is decoded at 324x242 instead of in full.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from pipeline.errors import SceneError

VERSION = 4
COLOR_JPEG = 2
DEPTH_ZLIB_USHORT = 1
COLOR_CODECS = {COLOR_JPEG: "JPEG"}
DEPTH_CODECS = {DEPTH_ZLIB_USHORT: "zlib_ushort"}
COLOR_ERRORS = (OSError, ValueError, SyntaxError)  # what Pillow raises for an image that does not decode

_MAT = "<16f"
# after the sensor name: 4 matrices, 2 compression codes, 4 image sizes, depth shift, frame count
_HEADER_TAIL = struct.Struct("<64f2i4IfQ")
_FRAME = struct.Struct("<16f4Q")  # camera_to_world, timestamp colour/depth, payload sizes colour/depth
FRAME_HEADER_BYTES = _FRAME.size  # 96


@dataclass(frozen=True, eq=False)
class SensHeader:
    """The stream's header: cameras, codecs, image sizes ([H, W]) and frame count."""

    intrinsic_color: np.ndarray  # f32[4, 4]
    intrinsic_depth: np.ndarray  # f32[4, 4]
    color_hw: tuple[int, int]
    depth_hw: tuple[int, int]
    extrinsic_color: np.ndarray = field(default_factory=lambda: np.eye(4, dtype=np.float32))
    extrinsic_depth: np.ndarray = field(default_factory=lambda: np.eye(4, dtype=np.float32))
    depth_shift: float = 1000.0
    num_frames: int = 0  # write_sens writes the number of frames it is given instead
    sensor_name: str = "StructureSensor"
    color_compression: int = COLOR_JPEG
    depth_compression: int = DEPTH_ZLIB_USHORT


@dataclass(frozen=True, eq=False)
class SensFrameEntry:
    """One frame in the index: its pose and where its payloads lie in the file."""

    camera_to_world: np.ndarray  # f32[4, 4] as stored (may hold -inf for a lost track)
    timestamp_color: int
    timestamp_depth: int
    color_offset: int
    color_size: int
    depth_offset: int
    depth_size: int


@dataclass(frozen=True, eq=False)
class SensFrame:
    """A frame to write: pose, JPEG bytes and zlib-compressed depth bytes (see :func:`encode_depth`)."""

    camera_to_world: np.ndarray
    color: bytes
    depth: bytes
    timestamp_color: int = 0
    timestamp_depth: int = 0


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    """A decoded frame: colour (an RGB Pillow image at the colour size, or at the size
    :meth:`SensFile.read_frame` was asked for; ``np.asarray`` gives u8[H, W, 3]) and depth
    u16[h, w] as stored."""

    camera_to_world: np.ndarray  # f32[4, 4]
    color: Image.Image
    depth_raw: np.ndarray  # u16[h, w], metres * depth_shift (0: no measurement)
    depth_shift: float

    @property
    def depth(self) -> np.ndarray:
        """f32[h, w] depth in metres."""
        return self.depth_raw.astype(np.float32) / np.float32(self.depth_shift)


def encode_depth(depth: np.ndarray) -> bytes:
    """zlib_ushort payload of a u16[h, w] depth image (raw units, little-endian)."""
    return zlib.compress(np.ascontiguousarray(depth, "<u2").tobytes())


def write_sens(path: str | Path, header: SensHeader, frames: Iterable[SensFrame]) -> int:
    """Write a version-4 ``.sens`` with ``header`` and ``frames`` (any iterable; the frame count
    in the header is patched once they are written) and an empty IMU block. Returns the count."""
    name = header.sensor_name.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<IQ", VERSION, len(name)) + name)
        count_at = f.tell() + _HEADER_TAIL.size - 8
        mats = [np.asarray(m, "<f4").reshape(16) for m in (
            header.intrinsic_color, header.extrinsic_color, header.intrinsic_depth, header.extrinsic_depth)]
        f.write(_HEADER_TAIL.pack(
            *np.concatenate(mats), header.color_compression, header.depth_compression,
            header.color_hw[1], header.color_hw[0], header.depth_hw[1], header.depth_hw[0],
            header.depth_shift, 0))
        count = 0
        for fr in frames:
            pose = np.asarray(fr.camera_to_world, "<f4").reshape(16)
            f.write(_FRAME.pack(*pose, fr.timestamp_color, fr.timestamp_depth, len(fr.color), len(fr.depth)))
            f.write(fr.color)
            f.write(fr.depth)
            count += 1
        f.write(struct.pack("<Q", 0))  # no IMU records
        f.seek(count_at)
        f.write(struct.pack("<Q", count))
    return count


class SensFile:
    """An open ``.sens``: ``header`` and ``frames`` (the index), frames decoded on demand.

    Use as a context manager, or call :meth:`close`. Reads are unbuffered, so building the
    index reads 96 bytes per frame and decoding a frame reads only its two payloads;
    ``index=False`` reads the header alone (``frames`` is then empty).
    """

    def __init__(self, path: str | Path, index: bool = True):
        self.path = Path(path)
        try:
            self._f = open(self.path, "rb", buffering=0)
        except OSError as exc:
            raise SceneError(f"cannot open .sens ({exc.__class__.__name__})", self.path) from exc
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            self.header = self._read_header()
            self.frames = self._read_index() if index else []
        except BaseException:
            self._f.close()
            raise

    def __enter__(self) -> SensFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self._f.read(n) if n else b""
        if data is None or len(data) != n:
            raise SceneError(f"truncated .sens: file ends inside the {what} ({self.size} bytes)", self.path)
        return data

    def _read_header(self) -> SensHeader:
        version, name_len = struct.unpack("<IQ", self._read_exact(12, "header"))
        if version != VERSION:
            raise SceneError(f".sens version {version} is not supported (expected {VERSION})", self.path)
        if name_len > self.size:
            raise SceneError(f"truncated .sens: sensor name of {name_len} bytes is longer than the file", self.path)
        name = self._read_exact(name_len, "header").decode(errors="replace")
        values = _HEADER_TAIL.unpack(self._read_exact(_HEADER_TAIL.size, "header"))
        mats = np.asarray(values[:64], np.float32).reshape(4, 4, 4)
        color_codec, depth_codec, cw, ch, dw, dh, shift, count = values[64:]
        if color_codec not in COLOR_CODECS:
            raise SceneError(f".sens colour compression type {color_codec} is not supported "
                             f"(only {COLOR_JPEG} = JPEG)", self.path)
        if depth_codec not in DEPTH_CODECS:
            raise SceneError(f".sens depth compression type {depth_codec} is not supported "
                             f"(only {DEPTH_ZLIB_USHORT} = zlib_ushort)", self.path)
        if not shift > 0:
            raise SceneError(f".sens depth shift {shift} is not positive", self.path)
        return SensHeader(intrinsic_color=mats[0], extrinsic_color=mats[1], intrinsic_depth=mats[2],
                          extrinsic_depth=mats[3], color_hw=(ch, cw), depth_hw=(dh, dw),
                          depth_shift=float(shift), num_frames=count, sensor_name=name,
                          color_compression=color_codec, depth_compression=depth_codec)

    def _read_index(self) -> list[SensFrameEntry]:
        entries = []
        offset = self._f.tell()
        n = self.header.num_frames
        for i in range(n):
            if offset + FRAME_HEADER_BYTES > self.size:
                raise SceneError(f"truncated .sens: frame {i} of {n} starts past the end of the "
                                 f"file ({self.size} bytes)", self.path)
            self._f.seek(offset)
            values = _FRAME.unpack(self._read_exact(FRAME_HEADER_BYTES, f"header of frame {i}"))
            ts_color, ts_depth, color_size, depth_size = values[16:]
            color_at = offset + FRAME_HEADER_BYTES
            offset = color_at + color_size + depth_size
            if offset > self.size:
                raise SceneError(f"truncated .sens: frame {i} of {n} ends at byte {offset}, past the "
                                 f"end of the file ({self.size} bytes)", self.path)
            entries.append(SensFrameEntry(np.asarray(values[:16], np.float32).reshape(4, 4), ts_color,
                                          ts_depth, color_at, color_size, color_at + color_size, depth_size))
        return entries

    def read_frame(self, i: int, color_size: tuple[int, int] | None = None) -> DecodedFrame:
        """Decode frame ``i``, its colour at ``color_size`` (W, H) when given (see :func:`color_image`);
        a payload that does not decode raises SceneError naming the frame."""
        e = self.frames[i]
        self._f.seek(e.color_offset)
        payload = self._read_exact(e.color_size + e.depth_size, f"payload of frame {i}")
        color = decode_color(payload[: e.color_size], self.path, i, color_size)
        raw = decode_depth(payload[e.color_size:], self.header.depth_hw, self.path, i)
        return DecodedFrame(e.camera_to_world, color, raw, self.header.depth_shift)


def color_image(source: bytes | str | Path | BinaryIO, size: tuple[int, int] | None = None) -> Image.Image:
    """The RGB image of a colour frame (JPEG bytes, or an image file), resized bilinear to
    ``size`` (W, H) when given. A JPEG larger than ``size`` is decoded in draft mode at the
    smallest scale that stays at least ``size``; one at ``size`` decodes in full, as without it.
    Raises one of COLOR_ERRORS when the image does not decode."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        if size is not None:
            im.draft("RGB", size)  # a no-op for other formats and for an image at `size`
        rgb = im.convert("RGB")  # loads the pixels (a copy when already RGB)
    return rgb if size is None else rgb.resize(size, Image.BILINEAR)


def decode_color(data: bytes, path: Path, index: int, size: tuple[int, int] | None = None) -> Image.Image:
    """The RGB image of a JPEG payload (at ``size`` when given, see :func:`color_image`)."""
    try:
        return color_image(data, size)
    except COLOR_ERRORS as exc:
        raise SceneError(f"colour of frame {index} does not decode ({exc.__class__.__name__})", path) from exc


def decode_depth(data: bytes, hw: tuple[int, int], path: Path, index: int) -> np.ndarray:
    """u16[h, w] of a zlib_ushort payload."""
    try:
        raw = zlib.decompress(data)
    except zlib.error as exc:
        raise SceneError(f"depth of frame {index} does not decode (zlib: {exc})", path) from exc
    if len(raw) != 2 * hw[0] * hw[1]:
        raise SceneError(f"depth of frame {index} has {len(raw)} bytes, expected {2 * hw[0] * hw[1]} "
                         f"({hw[1]}x{hw[0]} uint16)", path)
    return np.frombuffer(raw, "<u2").reshape(hw).astype(np.uint16)
