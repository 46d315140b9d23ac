"""Real storage servers on 127.0.0.1 for tests and benchmarks: nginx (HTTP with Range), moto's S3 and
gcp-storage-emulator (GCS).

Each is started as child processes on a free port with their state in a temporary folder,
and stopped (their process only) by ``stop()`` / the context manager. ``ServerUnavailable``
says why one could not start (nginx not installed: ``apt-get install nginx``; moto not
installed: ``pip install 'moto[server]'``; ``pip install gcp-storage-emulator``), so tests can skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rhovid.benchmarks.netproxy import free_port


class ServerUnavailable(RuntimeError):
    """The server cannot be started here (the message says why and how to install it)."""


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"exited with {proc.returncode}: {log.read_text(errors='replace')[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    proc.kill()
    raise ServerUnavailable(f"no answer on port {port} after {timeout:.0f} s")


class _Server:
    proc: subprocess.Popen | None = None
    tmp: Path
    port: int = 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _launch(self, program: str, install: str, args: list[str]) -> None:
        """Start the venv's (or PATH's) ``program`` with ``args`` (``{port}`` filled in) on a free port."""
        exe = shutil.which(program) or str(Path(sys.executable).with_name(program))
        if not os.path.exists(exe):
            raise ServerUnavailable(f"{program} is not installed ({install})")
        self.tmp = Path(tempfile.mkdtemp(prefix=f"rhovid-{program}-"))
        self.port = free_port()
        log = self.tmp / "stderr.log"
        self.proc = subprocess.Popen([exe, *(a.format(port=self.port) for a in args)], stdout=subprocess.DEVNULL,
                                     stderr=open(log, "wb"), cwd=self.tmp)
        _wait_port(self.port, self.proc, log)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Nginx(_Server):
    """nginx serving folder ``root`` read-only at ``http://127.0.0.1:PORT/`` (Range, keep-alive, autoindex)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.port = 0

    def start(self) -> Nginx:
        exe = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                              if os.path.exists(p)), None)
        if exe is None:
            raise ServerUnavailable("nginx is not installed (apt-get install -y nginx)")
        self.tmp = Path(tempfile.mkdtemp(prefix="rhovid-nginx-"))
        self.port = free_port()
        # As root, nginx's workers would switch to `nobody`, who cannot read pytest's 0700 folders.
        user = "user root;" if os.geteuid() == 0 else ""
        t = self.tmp
        conf = f"""{user}
daemon off;
worker_processes 2;
pid {t}/nginx.pid;
error_log {t}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path {t}/body; proxy_temp_path {t}/proxy; fastcgi_temp_path {t}/fcgi;
  uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;
  server {{
    listen 127.0.0.1:{self.port};
    root {self.root};
    autoindex on;
    autoindex_format html;
  }}
}}
"""
        (t / "nginx.conf").write_text(conf)
        log = t / "stderr.log"
        self.proc = subprocess.Popen([exe, "-c", str(t / "nginx.conf"), "-p", str(t)],
                                     stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
        _wait_port(self.port, self.proc, log)
        return self


class MotoS3(_Server):
    """moto's standalone S3 server; ``env`` holds the variables that point boto/s3fs at it."""

    def __init__(self):
        self.port = 0

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> MotoS3:
        self._launch("moto_server", "pip install 'moto[server]'", ["-H", "127.0.0.1", "-p", "{port}"])
        return self

    def make_bucket(self, name: str) -> None:
        import s3fs

        fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=self.url, skip_instance_cache=True)
        fs.mkdir(name)


class GcsEmulator(_Server):
    """``gcp-storage-emulator`` (a GCS JSON-API server in Python, in memory); ``env`` holds the
    variables that point gcsfs at it: the endpoint, anonymous credentials, and gcsfs's bucket-type
    probe switched off (gcsfs >= 2026.10 asks each bucket's type over gRPC with TLS, which the
    emulator does not speak: 60 s of "SSL_ERROR_SSL: WRONG_VERSION_NUMBER" per bucket, measured
    2026-12-03, before it falls back to the JSON API)."""

    def __init__(self):
        self.port = 0

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.url, "FSSPEC_GS_TOKEN": "anon", "FSSPEC_GS_PROJECT": "rhovid-test",
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

    def start(self) -> GcsEmulator:
        self._launch("gcp-storage-emulator", "pip install gcp-storage-emulator",
                     ["start", "--host", "127.0.0.1", "--port", "{port}", "--in-memory", "--quiet"])
        return self

    def make_bucket(self, name: str) -> None:
        import gcsfs

        gcsfs.GCSFileSystem(token="anon", project="rhovid-test", endpoint_url=self.url,
                            skip_instance_cache=True).mkdir(name)
