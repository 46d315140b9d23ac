"""Make a fragmented MP4 present its first frame at time 0: an edit list in the init segment.

ffmpeg's MP4 muxer keeps decode timestamps >= 0, so with B-frames (decode order differs from
display order by one frame) the first frame is *presented* at one frame duration (1/30 s at
30 fps), and a fragmented MP4 with an empty ``moov`` carries no edit list to undo that. A
decoder that maps frame index i to time i / fps (torchcodec's approximate seek mode, decord,
any "seek to t" API) is then off by one frame: torchcodec returned frame i+1 for every
index = 15 mod 16. The standard fix, which ffmpeg/PyAV, DALI and browsers honour, is an edit
list whose single entry starts the presentation at the first frame's composition time
(ISO/IEC 14496-12 8.6.6, ``media_time``), with ``segment_duration`` 0 for "to the end"
(the duration of a fragmented file is not known when its ``moov`` is written).

Only the init segment changes (``moov`` and the video ``trak`` grow by 36 bytes); fragments,
sample timestamps and the decoded frames stay identical, and fragment offsets are re-read
from the rewritten bytes by the ingest worker.
"""

from __future__ import annotations

import struct

from rhovid.ingest.fmp4 import iter_boxes, parse_fragments, video_samples


def presentation_start(mp4: bytes) -> int:
    """Composition time (track timescale) of the first presented frame: the smallest composition
    time of the first fragment (its IDR frame starts a closed GOP, so no later frame is earlier)."""
    table = parse_fragments(mp4)
    if not table.fragments:
        return 0
    samples = video_samples(mp4[: table.fragments[0].byte_end]).samples
    return min((s.cts for s in samples), default=0)


def start_at_zero(mp4: bytes) -> bytes:
    """``mp4`` with its video track's presentation starting at 0 (see the module docstring).

    A file already starting at 0 is returned unchanged; an existing edit list of the video
    track is replaced.

    Raises:
        ValueError: not a fragmented MP4 with a video track (``rhovid.ingest.fmp4``).
    """
    shift = presentation_start(mp4)
    if shift == 0:
        return mp4
    elst = struct.pack(">I4sII", 28, b"elst", 0, 1) + struct.pack(">IiHH", 0, shift, 1, 0)
    edts = struct.pack(">I4s", 8 + len(elst), b"edts") + elst
    out = bytearray()
    for kind, pos, header, size in iter_boxes(mp4):
        if kind != b"moov":
            out += mp4[pos : pos + size]
            continue
        moov = bytearray()
        done = False
        for k2, p2, h2, s2 in iter_boxes(mp4, pos + header, pos + size):
            if k2 != b"trak" or done or not _is_video(mp4, p2 + h2, p2 + s2):
                moov += mp4[p2 : p2 + s2]
                continue
            trak = bytearray()
            for k3, p3, _h3, s3 in iter_boxes(mp4, p2 + h2, p2 + s2):
                if k3 == b"edts":
                    continue  # replaced by ours, right after tkhd
                trak += mp4[p3 : p3 + s3]
                if k3 == b"tkhd":
                    trak += edts
            moov += struct.pack(">I4s", 8 + len(trak), b"trak") + trak
            done = True
        out += struct.pack(">I4s", 8 + len(moov), b"moov") + moov
    return bytes(out)


def _is_video(data: bytes, start: int, end: int) -> bool:
    for kind, pos, header, size in iter_boxes(data, start, end):
        if kind == b"mdia":
            for k2, p2, h2, _s2 in iter_boxes(data, pos + header, pos + size):
                if k2 == b"hdlr":
                    return bytes(data[p2 + h2 + 8 : p2 + h2 + 12]) == b"vide"
    return False
