"""The storage layer and the ranged fetcher against real servers: nginx (HTTP Range) and moto's S3,
with a proxy in front that adds latency or injects 503s and connection resets."""

from __future__ import annotations

import os

import pytest

from rhovid import storage
from rhovid.benchmarks.netproxy import HttpProxy
from rhovid.ranged import FetchError, RangeFetcher, coalesce, prefetch


def test_paths_and_urls(tmp_path):
    assert storage.protocol("data/x") == "file" and storage.protocol("S3://b/x") == "s3"
    assert not storage.is_remote(tmp_path) and not storage.is_remote(f"file://{tmp_path}")
    assert storage.is_remote("gs://b/p") and storage.is_remote("https://h/p")
    assert storage.local_path(f"file://{tmp_path}/a") == tmp_path / "a"
    assert storage.join("s3://b/data/", "shards", "x.tar") == "s3://b/data/shards/x.tar"
    assert storage.join(tmp_path, "shards", "x.tar") == str(tmp_path / "shards" / "x.tar")
    with pytest.raises(ValueError, match="remote URL"):
        storage.local_path("s3://b/x")


def test_a_missing_backend_names_the_extra():
    import importlib.util

    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here: no missing backend to report")
    with pytest.raises(ValueError, match=r"gs:// backend is not installed .*rhovid\[gcs\]"):
        storage.read_bytes("gs://bucket/index.json")


def test_local_reads_and_atomic_writes(tmp_path):
    url = f"file://{tmp_path}/d/a.bin"
    storage.write_bytes(url, b"0123456789")
    assert storage.read_range(url, 2, 5) == b"234" and storage.exists(url)
    assert storage.list_names(f"file://{tmp_path}/d") == ["a.bin"]
    storage.upload(tmp_path / "d" / "a.bin", tmp_path / "e" / "b.bin")
    assert (tmp_path / "e" / "b.bin").read_bytes() == b"0123456789"
    assert storage.list_names(tmp_path / "nope") == []


def test_bucket_reads_writes_lists(store_bucket, tmp_path):
    """The storage contract on S3 (moto) and GCS (gcp-storage-emulator): whole and ranged reads,
    single and multipart uploads, listings, removal; and the fetcher's ranged reads."""
    bucket = store_bucket
    storage.write_bytes(f"{bucket}/d/a.bin", b"hello world")
    assert storage.read_range(f"{bucket}/d/a.bin", 6, 11) == b"world"
    assert storage.read_bytes(f"{bucket}/d/a.bin") == b"hello world"
    (tmp_path / "big").write_bytes(os.urandom(3 << 20))
    storage.upload(tmp_path / "big", f"{bucket}/d/big")
    assert storage.read_bytes(f"{bucket}/d/big") == (tmp_path / "big").read_bytes()
    assert storage.list_names(f"{bucket}/d") == ["a.bin", "big"]
    assert not storage.exists(f"{bucket}/d/c") and storage.list_names(f"{bucket}/none") == []
    with pytest.raises(FileNotFoundError):
        storage.upload(tmp_path / "missing", f"{bucket}/d/c")
    assert not storage.exists(f"{bucket}/d/c")  # a failed upload leaves nothing
    storage.remove(f"{bucket}/d/a.bin")
    assert storage.list_names(f"{bucket}/d") == ["big"]
    assert storage.list_dirs(bucket) == ["d"]
    fetcher = RangeFetcher(inflight=4)
    ranges = [(k * 100_000, k * 100_000 + 70_000) for k in range(10)]
    got = fetcher.submit(f"{bucket}/d/big", ranges).result()
    fetcher.close()
    assert all(got[(a, b)] == (tmp_path / "big").read_bytes()[a:b] for a, b in ranges)
    assert (fetcher.stats.requests, fetcher.stats.bytes, fetcher.stats.retries) == (10, 700_000, 0)
    with pytest.raises(FileNotFoundError):
        fetcher.get(f"{bucket}/d/none", 0, 10)


def test_a_bucket_sees_what_another_process_wrote_after_a_listing(store_bucket):
    """s3fs and gcsfs answer whole-object reads and exists() from their listing caches; a resuming writer
    must see objects another process wrote after that listing (index.json of a killed run)."""
    bucket = store_bucket
    storage.write_bytes(f"{bucket}/data/a.txt", b"a")
    assert storage.list_names(f"{bucket}/data") == ["a.txt"]  # fills the listing cache
    fs, path = storage.filesystem(f"{bucket}/data/index.json")
    other = type(fs)(skip_instance_cache=True, **fs.storage_options)  # another client: its own caches
    other.pipe_file(path, b"{}")
    assert storage.exists(f"{bucket}/data/index.json")
    assert storage.read_bytes(f"{bucket}/data/index.json") == b"{}"


def test_http_ranges_listing_and_read_only(nginx):
    (nginx.root / "h").mkdir(exist_ok=True)
    payload = os.urandom(100_000)
    (nginx.root / "h" / "x.bin").write_bytes(payload)
    url = f"{nginx.url}/h/x.bin"
    assert storage.read_range(url, 1000, 1010) == payload[1000:1010]
    assert storage.read_bytes(url) == payload
    assert storage.list_names(f"{nginx.url}/h") == ["x.bin"]
    with pytest.raises(FileNotFoundError):
        storage.read_range(f"{nginx.url}/h/none", 0, 10)
    with pytest.raises(ValueError, match="read-only"):
        storage.write_bytes(f"{nginx.url}/h/y.bin", b"no")


def test_coalesce():
    assert coalesce([(10, 20), (0, 5), (15, 30), (30, 31), (40, 41)]) == [(0, 5), (10, 31), (40, 41)]
    assert coalesce([]) == []


def test_fetcher_retries_faults_and_returns_the_right_bytes(nginx):
    payload = os.urandom(400_000)
    (nginx.root / "f.bin").write_bytes(payload)
    with HttpProxy(nginx.port, fail_503=0.2, drop=0.15, seed=3) as proxy:
        fetcher = RangeFetcher(inflight=8, backoff_s=0.001)
        ranges = [(k * 3000, k * 3000 + 20_000) for k in range(100)]
        got = fetcher.submit(f"{proxy.url}/f.bin", ranges).result()
        fetcher.close()
    assert all(got[(a, b)] == payload[a:b] for a, b in ranges)
    faults = proxy.counters.injected_503 + proxy.counters.dropped
    assert faults >= 20 and fetcher.stats.failed == 0
    # every injected fault cost exactly one repeat (aiohttp itself repeats none of these)
    assert fetcher.stats.retries == faults and fetcher.stats.requests == 100 + faults
    assert fetcher.stats.bytes == 100 * 20_000


def test_fetcher_gives_up_after_its_attempts_and_does_not_retry_missing(nginx):
    (nginx.root / "g.bin").write_bytes(b"x" * 1000)
    with HttpProxy(nginx.port, fail_503=1.0) as proxy:
        fetcher = RangeFetcher(inflight=2, attempts=3, backoff_s=0.001)
        with pytest.raises(FetchError, match="failed 3 times"):
            fetcher.get(f"{proxy.url}/g.bin", 0, 10)
        assert (fetcher.stats.requests, fetcher.stats.retries, fetcher.stats.failed) == (3, 2, 1)
    fetcher = RangeFetcher(attempts=5)
    with pytest.raises(FileNotFoundError):
        fetcher.get(f"{nginx.url}/none.bin", 0, 10)
    assert fetcher.stats.requests == 1


def test_fetcher_keeps_reads_in_flight(nginx):
    """With 50 ms of added round trip, the proxy sees up to `inflight` requests at once."""
    (nginx.root / "c.bin").write_bytes(os.urandom(200_000))
    with HttpProxy(nginx.port, rtt_s=0.05) as proxy:
        fetcher = RangeFetcher(inflight=12)
        futures = [fetcher.submit(f"{proxy.url}/c.bin", [(k * 1000, k * 1000 + 4000)]) for k in range(48)]
        assert all(len(f.result()[(k * 1000, k * 1000 + 4000)]) == 4000 for k, f in enumerate(futures))
        fetcher.close()
    assert proxy.counters.max_inflight >= 10


def test_prefetch_keeps_order_and_a_bounded_window():
    started = []

    def start(i):
        started.append(i)
        if i == 3:
            raise ValueError("bad item")
        from concurrent.futures import Future

        f = Future()
        f.set_result(i * 10)
        return f

    out = []
    for item, fut in prefetch(range(8), start, depth=2):
        assert len(started) <= item + 3  # never more than depth + 1 items started ahead
        out.append((item, fut.exception() is not None or fut.result()))
    assert out == [(0, 0), (1, 10), (2, 20), (3, True), (4, 40), (5, 50), (6, 60), (7, 70)]


def test_a_stalled_read_times_out_and_is_retried(nginx, monkeypatch):
    """A server that accepts a request and never answers: the read times out after
    RHOVID_IO_TIMEOUT_S and the retry gets the bytes."""
    payload = os.urandom(50_000)
    (nginx.root / "s.bin").write_bytes(payload)
    monkeypatch.setenv("RHOVID_IO_TIMEOUT_S", "0.5")
    with HttpProxy(nginx.port, stall=0.3, seed=2) as proxy:
        fetcher = RangeFetcher(inflight=8, backoff_s=0.001)
        ranges = [(k * 1000, k * 1000 + 2000) for k in range(24)]
        got = fetcher.submit(f"{proxy.url}/s.bin", ranges).result(timeout=60)
        fetcher.close()
    assert all(got[(a, b)] == payload[a:b] for a, b in ranges)
    assert proxy.counters.stalled > 0 and fetcher.stats.retries == proxy.counters.stalled
