"""Hostile source files for the reliability tests, made with the real ffmpeg plus byte edits."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import tarfile
from pathlib import Path

from rhovid.ffmpeg import ffmpeg_exe
from rhovid.ingest.shards import write_idx


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def gap_video(path: Path, gap_s: float = 3600.0, frames: int = 120, size: str = "64x48") -> Path:
    """An H.264 MP4 of ``frames`` frames at 30 fps whose second half starts ``gap_s`` seconds late
    (``setpts``, timestamps passed through): 12 KB for a one-hour gap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-frames:v", str(frames),
            "-vf", f"setpts='PTS+if(gte(N,{frames // 2}),{gap_s}/TB,0)'", "-fps_mode", "passthrough",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "file:" + str(path))
    return path


def timescale_zero_video(path: Path, seconds: float = 4.0, size: str = "160x120") -> Path:
    """A plain 30 fps H.264 MP4 whose video ``mdhd`` timescale is overwritten with 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "file:" + str(path))
    data = bytearray(path.read_bytes())
    at = data.index(b"mdhd")  # the only track: video
    version = data[at + 4]
    struct.pack_into(">I", data, at + 8 + (16 if version == 1 else 8), 0)
    path.write_bytes(bytes(data))
    return path


def hls_playlist(path: Path, segment: Path, seconds: float = 2.0) -> Path:
    """An HLS playlist at ``path`` naming ``segment`` (an MPEG-TS written here) by absolute path."""
    segment.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30", "-t", str(seconds), "-c:v", "libx264",
            "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mpegts", "file:" + str(segment))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{seconds:.0f}\n"
                    f"#EXTINF:{seconds:.1f},\n{segment.resolve()}\n#EXT-X-ENDLIST\n")
    return path


# ----------------------------------------------------------------------------- hostile shards


def tar_members(shard: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every member of a (well-formed) tar with its payload."""
    with tarfile.open(shard) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


def write_tar(shard: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    """Write ``members`` as a plain USTAR tar (sizes follow the payloads)."""
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, payload in members:
            m.size = len(payload)
            tar.addfile(m, io.BytesIO(payload))


def edit_sample(shard: Path, index: int, meta=None, json_bytes: bytes | None = None, mp4: bytes | None = None) -> str:
    """Rewrite sample ``index`` of ``shard``: ``meta(dict)`` edits its json in place, or
    ``json_bytes`` replaces the member's bytes; ``mp4`` replaces the video. The ``.idx`` is
    rewritten to match (the damage is in the sample, not in a stale index). Returns its key."""
    members = tar_members(shard)
    key = members[2 * index][0].name.partition(".")[0]
    out = []
    for m, payload in members:
        if m.name == f"{key}.json":
            if meta is not None:
                doc = json.loads(payload)
                meta(doc)
                payload = json.dumps(doc).encode()
            payload = json_bytes if json_bytes is not None else payload
        elif m.name == f"{key}.mp4" and mp4 is not None:
            payload = mp4
        out.append((m, payload))
    write_tar(shard, out)
    write_idx(shard)
    return key


def member_spans(shard: Path) -> list[tuple[str, int, int, int]]:
    """``(name, header offset, payload offset, payload size)`` of every member."""
    with tarfile.open(shard) as tar:
        return [(m.name, m.offset, m.offset_data, m.size) for m in tar.getmembers()]


def claim_size(shard: Path, member: int, size: int) -> None:
    """Make member ``member``'s header claim ``size`` payload bytes (base-256 when it does not
    fit in octal, as GNU tar writes it), checksum fixed; the payload itself is unchanged."""
    _, header, _, _ = member_spans(shard)[member]
    data = bytearray(shard.read_bytes())
    field = (b"%011o\0" % size) if size < 8**11 else bytes([0x80]) + size.to_bytes(11, "big")
    data[header + 124:header + 136] = field
    data[header + 148:header + 156] = b" " * 8
    data[header + 148:header + 156] = b"%06o\0 " % sum(data[header:header + 512])
    shard.write_bytes(bytes(data))


def huge_trun(mp4: bytes) -> bytes:
    """A 1 KB fMP4: ``mp4``'s init segment and first moof, whose video trun declares 2**32 - 1
    samples with no per-sample fields, and whose tfhd gives no default size (trex's is 0)."""
    moof = mp4.index(b"moof") - 4
    (moof_size,) = struct.unpack_from(">I", mp4, moof)
    data = bytearray(mp4[:moof + moof_size]) + struct.pack(">I4s", 8, b"mdat")
    tfhd, trun = data.index(b"tfhd", moof), data.index(b"trun", moof)
    struct.pack_into(">I", data, tfhd + 4, 0x020000)  # default-base-is-moof, no defaults
    struct.pack_into(">II", data, trun + 4, 0x000001, 0xFFFFFFFF)  # data offset only; 2**32 - 1 samples
    return bytes(data)


def zero_frames(mp4: bytes) -> bytes:
    """``mp4`` with every ``mdat`` payload zeroed: its boxes and fragment table intact, its
    frames undecodable."""
    from rhovid.ingest.fmp4 import iter_boxes

    data = bytearray(mp4)
    for kind, pos, header, size in iter_boxes(mp4):
        if kind == b"mdat":
            data[pos + header:pos + size] = bytes(size - header)
    return bytes(data)
