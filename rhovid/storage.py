"""Where DATA lives: a plain path or any fsspec URL (``s3://``, ``gs://``, ``http(s)://``, ``file://``).

This module is the one owner of URL handling (DESIGN.md decision 8): joining, listing,
whole and ranged reads, and whole-object writes. Every stage that may read or write a remote
DATA goes through it; a plain path (or ``file://``) stays a local path and keeps the local,
atomic file semantics of ``rhovid.atomic``.

Backends come from fsspec: ``s3://`` needs ``pip install rhovid[s3]`` (s3fs), ``gs://``
``rhovid[gcs]`` (gcsfs); ``http(s)://`` is read-only and needs aiohttp (in ``[s3]``/``[http]``).
Credentials and endpoints come from each backend's usual environment and config files
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``~/.aws/config``; ``GOOGLE_APPLICATION_CREDENTIALS``;
fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>`` variables), never from rhovid's own options.

Writes are whole-object: an S3/GCS PUT (or a completed multipart upload) makes the object
appear whole or not at all, which is the remote form of temp + rename.
"""

from __future__ import annotations

import os
from pathlib import Path

from rhovid.atomic import atomic_path, atomic_write_bytes

LOCAL_PROTOCOLS = ("file", "local")
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}


def protocol(data: str | os.PathLike) -> str:
    """``"s3"``, ``"gs"``, ``"https"``, ..., or ``"file"`` for a plain path."""
    text = os.fspath(data)
    return text.split("://", 1)[0].lower() if "://" in text else "file"


def is_remote(data: str | os.PathLike) -> bool:
    """True for a URL whose bytes are not on a local file system."""
    return protocol(data) not in LOCAL_PROTOCOLS


def local_path(data: str | os.PathLike) -> Path:
    """The local path of a plain path or ``file://`` URL.

    Raises:
        ValueError: ``data`` is a remote URL.
    """
    if is_remote(data):
        raise ValueError(f"{data} is a remote URL, not a local path")
    text = os.fspath(data)
    return Path(text.split("://", 1)[1]) if "://" in text else Path(text)


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/...`` for a path or a URL (URLs keep their scheme; no normalisation)."""
    if not is_remote(base):
        return str(local_path(base).joinpath(*parts))
    return "/".join([os.fspath(base).rstrip("/"), *(p.strip("/") for p in parts)])


def name(url: str | os.PathLike) -> str:
    """Last path component of a path or URL."""
    return os.fspath(url).rstrip("/").rsplit("/", 1)[-1]


def filesystem(url: str | os.PathLike):
    """``(fs, path)`` for ``url`` (fsspec), with a clear error when the backend is not installed."""
    import fsspec

    text = os.fspath(url)
    try:
        return fsspec.core.url_to_fs(text, **storage_options(text))
    except ImportError as e:
        extra = _EXTRAS.get(protocol(text), protocol(text))
        raise ValueError(f"{text}: the {protocol(text)}:// backend is not installed ({e}); "
                         f"pip install 'rhovid[{extra}]'") from None


def storage_options(url: str | os.PathLike) -> dict:
    """fsspec options rhovid sets itself for ``url``'s backend: bounded timeouts, so a stalled
    connection is retried (``rhovid.ranged``) rather than hanging a loader worker; everything
    else (credentials, regions) is the backend's own configuration."""
    proto = protocol(url)
    timeout = float(os.environ.get("RHOVID_IO_TIMEOUT_S", "60"))
    if proto in ("http", "https"):
        import aiohttp

        return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10))}}
    if proto in ("s3", "s3a"):
        opts: dict = {"config_kwargs": {"connect_timeout": min(timeout, 10), "read_timeout": timeout}}
        # botocore reads AWS_ENDPOINT_URL itself; passing it makes fsspec's cached filesystem
        # follow a changed endpoint instead of reusing one made for the old value
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts["endpoint_url"] = endpoint
        return opts
    return {}


def absolute(data: str | os.PathLike) -> str:
    """A URL as it is, a local path made absolute (provenance records, task arguments)."""
    return os.fspath(data) if is_remote(data) else os.path.abspath(local_path(data))


def open_zarr_group(root: str | os.PathLike, path: str = "", mode: str = "r"):
    """A zarr 3 group under ``root``: a folder, or a URL through zarr's fsspec store."""
    import zarr

    if is_remote(root):
        from zarr.storage import FsspecStore

        store = FsspecStore.from_url(os.fspath(root), storage_options=storage_options(root), read_only=mode == "r")
        return zarr.open_group(store, path=path, mode=mode, zarr_format=3)
    return zarr.open_group(str(local_path(root)), path=path, mode=mode, zarr_format=3)


def exists(url: str | os.PathLike) -> bool:
    if not is_remote(url):
        return local_path(url).exists()
    fs, path = filesystem(url)
    fs.invalidate_cache(path)  # fresh: another process may have written it a moment ago
    return fs.exists(path)


def read_bytes(url: str | os.PathLike) -> bytes:
    """The whole file or object (small files: index, manifests, configs)."""
    if not is_remote(url):
        return local_path(url).read_bytes()
    fs, path = filesystem(url)
    # s3fs sizes a whole-object read from its listing cache first: a cached listing made before
    # another process wrote the object would answer "not found"
    fs.invalidate_cache(path)
    return fs.cat_file(path)


def read_range(url: str | os.PathLike, start: int, end: int) -> bytes:
    """Bytes ``start..end-1`` of a file or object (one ranged GET remotely); may be short at EOF."""
    if not is_remote(url):
        with open(local_path(url), "rb") as f:
            f.seek(start)
            return f.read(end - start)
    fs, path = filesystem(url)
    return fs.cat_file(path, start=start, end=end)


def list_names(url: str | os.PathLike) -> list[str]:
    """Names of the files directly in folder ``url`` (sorted; [] when it does not exist).

    Remote listings are always fresh (fsspec's listing cache is bypassed): a resuming writer
    must see what another process uploaded a moment ago.
    """
    return _listing(url, folders=False)


def list_dirs(url: str | os.PathLike) -> list[str]:
    """Names of the folders (object-store prefixes) directly in ``url`` (sorted; [] when none)."""
    return _listing(url, folders=True)


def _listing(url: str | os.PathLike, folders: bool) -> list[str]:
    if not is_remote(url):
        folder = local_path(url)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p.is_dir() if folders else p.is_file()))
    fs, path = filesystem(url)
    try:
        entries = fs.ls(path, detail=True, refresh=True)
    except FileNotFoundError:
        return []
    kind = "directory" if folders else "file"
    return sorted(name(e["name"]) for e in entries if e.get("type") == kind)


def write_bytes(url: str | os.PathLike, data: bytes) -> None:
    """Write a whole file/object atomically (local: temp + rename; remote: one PUT)."""
    if not is_remote(url):
        atomic_write_bytes(local_path(url), data)
        return
    fs, path = filesystem(_writable(url))
    fs.pipe_file(path, data)


def upload(src: str | os.PathLike, url: str | os.PathLike) -> None:
    """Copy local file ``src`` to ``url`` so that ``url`` appears whole or not at all.

    Remote: ``put_file`` (a single PUT, or a multipart upload that only becomes visible when
    completed). Local: copy to a temporary name, then rename.
    """
    if not is_remote(url):
        import shutil

        with atomic_path(local_path(url)) as tmp:
            shutil.copyfile(src, tmp)
        return
    if not os.path.isfile(src):
        raise FileNotFoundError(f"{src}: no such file to upload")
    fs, path = filesystem(_writable(url))
    fs.put_file(os.fspath(src), path)


def _writable(url: str | os.PathLike) -> str:
    if protocol(url) in ("http", "https"):
        raise ValueError(f"{url}: http(s):// is read-only; write to a folder, s3:// or gs:// and serve that")
    return os.fspath(url)


def remove_tree(url: str | os.PathLike) -> None:
    """Delete a folder (or every object under a prefix) if it exists."""
    if not is_remote(url):
        import shutil

        shutil.rmtree(local_path(url), ignore_errors=True)
        return
    fs, path = filesystem(_writable(url))
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass
    fs.invalidate_cache(path)


def remove(url: str | os.PathLike) -> None:
    """Delete a file/object if it exists."""
    if not is_remote(url):
        local_path(url).unlink(missing_ok=True)
        return
    fs, path = filesystem(_writable(url))
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
