"""Fuzzing the fragmented-MP4 parser: bounded time and memory, and a ValueError for anything broken.

Real fMP4s (ffmpeg, as ingest writes them; one with an audio track sharing the fragments) are
mutated where the parser reads: 32-bit fields set to edge values (0, 1, 2^31 - 1, 2^31, 2^32 - 1,
random), box sizes and types rewritten, bytes flipped, boxes duplicated or dropped, the file cut.
Every mutant must give a table or a ValueError (never struct.error or IndexError), within a CPU
second and a few MB (issue 13, item 6: one trun declaring 2^32 - 1 samples grew without bound).
"""

from __future__ import annotations

import contextlib
import random
import signal
import struct
import tracemalloc

import pytest

from rhovid.ingest.fmp4 import iter_boxes, parse_fragments, video_samples
from rhovid.ingest.probe import probe
from rhovid.ingest.transcode import TranscodeSettings, ffmpeg_args, run_ffmpeg

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"edts", b"stsd"}
EDGE = (0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
FULLBOX_FLAGS = {  # flag sets the parser branches on (ISO/IEC 14496-12 8.8.7, 8.8.8): none, some, all
    b"trun": (0x000000, 0x000001, 0x000005, 0x000201, 0x000A05, 0x000F05),
    b"tfhd": (0x000000, 0x020000, 0x020038, 0x000001, 0x00003B),
    b"tfdt": (0x000000,),
    b"mdhd": (0x000000,),
    b"tkhd": (0x000003,),
}
CPU_S = 1.0
"""CPU seconds one parse of a ~30 KB mutant may take (a clean parse takes about a millisecond)."""
MEMORY = 16 << 20
"""Bytes one parse may allocate at its peak (Python allocations, tracemalloc)."""


@pytest.fixture(scope="module")
def originals(tmp_path_factory, encode_video):
    root = tmp_path_factory.mktemp("fuzz")
    out = []
    for name, audio in (("plain", False), ("audio", True)):
        src = encode_video(root / f"{name}.mp4", size="96x64", seconds=1.0, audio=audio)
        settings = TranscodeSettings(short_side=64, gop=8, keep_audio=audio)
        out.append(run_ffmpeg(ffmpeg_args(str(src), probe(src), settings)))
    return out


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int, int]]:
    """(type, offset, header, size) of every box that reads cleanly, descending into the
    containers the parser reads (an earlier mutation may have broken the rest)."""
    out = []
    with contextlib.suppress(ValueError):
        for kind, pos, header, size in iter_boxes(data, start, end):
            out.append((kind, pos, header, size))
            if kind in _CONTAINERS:
                out += _boxes(data, pos + header + (8 if kind == b"stsd" else 0), pos + size)  # stsd: + entry count
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation of ``data`` where the parser looks (metadata boxes, not mdat payloads)."""
    boxes = [b for b in _boxes(data) if b[0] != b"mdat"] or [(b"", 0, 0, len(data))]
    buf = bytearray(data)
    weights = [5 if kind in FULLBOX_FLAGS else 1 for kind, *_ in boxes]  # where the counts and flags are
    kind, pos, header, size = rng.choices(boxes, weights)[0]
    with contextlib.suppress(struct.error, ValueError, IndexError):  # a mutation that does not fit: none
        _mutate_box(buf, pos, header, size, rng)
    return bytes(buf)


def _mutate_box(buf: bytearray, pos: int, header: int, size: int, rng: random.Random) -> None:
    op = rng.randrange(7)
    if op == 6 and bytes(buf[pos + 4:pos + 8]) in FULLBOX_FLAGS:  # a full box's flags, then its first field
        kind = bytes(buf[pos + 4:pos + 8])
        flags = rng.choice(FULLBOX_FLAGS[kind]) if rng.random() < 0.7 else rng.getrandbits(24)
        struct.pack_into(">I", buf, pos + header, flags | rng.choice((0, 1 << 24)))
        if kind == b"trun":  # and its sample count
            struct.pack_into(">I", buf, pos + header + 4, rng.choice(EDGE))
    elif op == 0:  # a 32-bit field of the box's payload to an edge value
        at = pos + header + 4 * rng.randrange(max(1, (size - header) // 4))
        if at + 4 <= len(buf):
            struct.pack_into(">I", buf, at, rng.choice(EDGE) if rng.random() < 0.8 else rng.getrandbits(32))
    elif op == 1:  # the box's size field
        struct.pack_into(">I", buf, pos, rng.choice((0, 1, 7, 8, size - 1, size + 1, *EDGE)))
    elif op == 2:  # its type: to another the parser knows, or noise
        struct.pack_into(">4s", buf, pos + 4, rng.choice([b"moov", b"moof", b"traf", b"trun", b"tfhd", b"mdat",
                                                          rng.randbytes(4)]))
    elif op == 3:  # a few random bytes
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(pos, pos + size)] = rng.getrandbits(8)
    elif op == 4:  # the box duplicated or dropped
        chunk = bytes(buf[pos:pos + size])
        buf[pos:pos + size] = chunk * 2 if rng.random() < 0.5 else b""
    else:  # the file cut inside this box
        del buf[rng.randrange(pos, max(pos + size, pos + 1)):]


class _Timeout(Exception):
    pass


def _raise_timeout(signum, frame):
    raise _Timeout


def _parse_bounded(data: bytes) -> None:
    """Both parsers on ``data``: a result or ValueError, within CPU_S CPU seconds and MEMORY bytes."""
    previous = signal.signal(signal.SIGVTALRM, _raise_timeout)  # CPU time: leaves pytest-timeout's SIGALRM alone
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    signal.setitimer(signal.ITIMER_VIRTUAL, CPU_S)
    try:
        for parse in (parse_fragments, video_samples):
            with contextlib.suppress(ValueError):
                parse(data)
    except _Timeout:
        raise AssertionError(f"parse took over {CPU_S} CPU s") from None
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)
    peak = tracemalloc.get_traced_memory()[1] - base
    assert peak < MEMORY, f"parse allocated {peak / 2**20:.1f} MiB"


def _fuzz(originals, seed: int, n: int) -> None:
    rng = random.Random(seed)
    tracemalloc.start()
    try:
        for i in range(n):
            data = rng.choice(originals)
            for _ in range(rng.choice((1, 1, 2, 3, 4))):  # stacked mutations reach deeper states
                data = mutate(data, rng)
            try:
                _parse_bounded(data)
            except Exception as e:
                raise AssertionError(f"mutant {i} of seed {seed} ({len(data)} bytes): {type(e).__name__}: {e}") from e
    finally:
        tracemalloc.stop()


def test_originals_parse(originals):
    for data in originals:
        assert parse_fragments(data).num_frames == 30 and len(video_samples(data).samples) == 30


def test_every_trun_flag_set_and_edge_count_is_bounded(originals):
    """Systematically, for the first fragment's tfhd and trun: every flag set of FULLBOX_FLAGS on
    both, with every edge sample count (a huge count with no per-sample fields and no default
    size is the 1 KB file that grew by 90 MB/s)."""
    data = originals[0]
    boxes = _boxes(data)
    (tfhd, *_), (trun, *_) = ([b[1] for b in boxes if b[0] == kind] for kind in (b"tfhd", b"trun"))
    tracemalloc.start()
    try:
        for tf_flags in FULLBOX_FLAGS[b"tfhd"]:
            for tr_flags in FULLBOX_FLAGS[b"trun"]:
                for count in EDGE:
                    buf = bytearray(data)
                    struct.pack_into(">I", buf, tfhd + 8, tf_flags)
                    struct.pack_into(">II", buf, trun + 8, tr_flags, count)
                    try:
                        _parse_bounded(bytes(buf))
                    except Exception as e:
                        raise AssertionError(f"tfhd flags {tf_flags:#x}, trun flags {tr_flags:#x}, count {count}: "
                                             f"{type(e).__name__}: {e}") from e
    finally:
        tracemalloc.stop()


def test_fuzzed_fragments_are_bounded_and_raise_value_error(originals):
    _fuzz(originals, seed=0, n=1000)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_fragments_are_bounded_and_raise_value_error_long(originals, seed):
    _fuzz(originals, seed=seed, n=10000)
