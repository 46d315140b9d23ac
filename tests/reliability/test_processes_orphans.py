"""A killed command leaves no process behind (issue 13, item 4; ``rhovid.lifetime``).

Only the command's own process is SIGKILLed (as the OOM killer or ``kill -9 PID`` does), not
its process group: its pool workers, their ffmpeg children and DataLoader workers must then end
by themselves. Before, pool workers blocked on their task queue for good, and DataLoader workers
killed during start-up watched init (pid 1) instead of their parent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from process_tree import descendants, kill_survivors, rhovid, wait_gone, wait_until

from rhovid.ffmpeg import ffmpeg_exe

GONE_S = 10.0
"""How long pool workers and ffmpeg may take to go (prctl: at once; the watchdog fallback: 1 s)."""
START_UP_S = 60.0
"""DataLoader workers killed during start-up go when their start-up reaches ``_worker_init``
(after importing torch: 7-9 s on the loaded 2-core VM); before, they never went."""


def _descendants_once(proc, ready, what: str) -> dict[int, str]:
    """``proc``'s descendants as soon as ``ready(their command lines)`` holds (within 60 s)."""
    seen: dict[int, str] = {}

    def check() -> bool:  # keep the snapshot that satisfied `ready`: a second look may catch an ffmpeg
        seen.clear()      # between two videos (one ended, the next not yet exec'd: an empty command line)
        seen.update(descendants(proc.pid))
        return ready(list(seen.values()))

    try:
        assert wait_until(check, 60), f"{what} never started"
        return dict(seen)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def _two_workers(commands: list[str]) -> bool:
    return sum("spawn_main" in c for c in commands) == 2


def _kill_parent_and_check(proc, started: dict[int, str], within: float = GONE_S) -> float:
    """SIGKILL ``proc`` alone; assert that every process in ``started`` ends within ``within`` s."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)  # not communicate(): orphans would hold its pipes open
    proc.stdout.close()
    proc.stderr.close()
    left, waited = wait_gone(started, within)
    kill_survivors(left)
    assert not left, f"still running {within:.0f} s after their parent was killed: {[started[p] for p in left]}"
    print(f"{len(started)} processes ended {waited:.2f} s after their parent was killed")
    return waited


def test_sigkilled_ingest_leaves_no_pool_worker_or_ffmpeg(tmp_path, encode_video):
    src = tmp_path / "src"
    for i in range(4):  # each takes seconds to transcode, so ffmpeg runs when the kill lands
        encode_video(src / "a" / f"v{i}.mp4", size="320x240", seconds=12.0)
    proc = rhovid("ingest", str(src), "--out", str(tmp_path / "data"), "--workers", "2", "--no-progress")
    ffmpeg = os.path.basename(ffmpeg_exe())
    started = _descendants_once(proc, lambda commands: any(ffmpeg in c for c in commands), "ffmpeg")
    workers = [c for c in started.values() if "spawn_main" in c]
    assert len(workers) == 2 and any(ffmpeg in c for c in started.values()), started
    _kill_parent_and_check(proc, started)


def test_sigkilled_boxes_leaves_no_pool_worker(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("boxes.zarr", "features.zarr"))
    proc = rhovid("boxes", str(data), "--method", "fh", "--box-fps", "15", "--workers", "2", "--no-progress")
    _kill_parent_and_check(proc, _descendants_once(proc, _two_workers, "the pool"))


LOADER_SCRIPT = textwrap.dedent("""
    import sys
    from rhovid.train.data import ClipLoader, LoaderConfig

    if __name__ == "__main__":
        cfg = LoaderConfig(data=sys.argv[1], rho=2, frames=2, stride=2, crop=32, batch_size=1, workers=2)
        for batch in ClipLoader(cfg):
            pass
""")


@pytest.mark.parametrize("trial", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_train_loader_killed_during_worker_start_up_leaves_no_worker(tiny_data, tmp_path, trial):
    script = tmp_path / "load.py"
    script.write_text(LOADER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_data)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    # both DataLoader workers exist: they are still importing torch when the kill lands
    started = _descendants_once(proc, _two_workers, "the DataLoader workers")
    _kill_parent_and_check(proc, started, within=START_UP_S)


TIED_CHILD = textwrap.dedent("""
    import multiprocessing as mp
    import os
    import sys
    import time
    from pathlib import Path

    from rhovid.lifetime import die_with_parent


    def child(flag: str, mark: str) -> None:
        while not os.path.exists(flag):  # the test kills our parent, then sets the flag
            time.sleep(0.01)
        die_with_parent()
        Path(mark).write_text("survived")
        time.sleep(60)


    if __name__ == "__main__":
        method, flag, mark = sys.argv[1:]
        proc = mp.get_context(method).Process(target=child, args=(flag, mark))
        proc.start()
        print(proc.pid, flush=True)
        proc.join()
""")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("parent_dies", [False, True])
def test_die_with_parent_reads_the_parent_not_its_pid(tmp_path, method, parent_dies):
    """A child started while its parent lives keeps running (a forkserver child's kernel parent is
    the fork server, so comparing pids killed every forkserver worker at start); a child whose
    parent died before it called ``die_with_parent`` exits there and then."""
    script, flag, mark = tmp_path / "tied.py", tmp_path / "flag", tmp_path / "mark"
    script.write_text(TIED_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), method, str(flag), str(mark)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, cwd=tmp_path)
    try:
        child = int(proc.stdout.readline())
        if parent_dies:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        flag.touch()
        if parent_dies:
            left, waited = wait_gone([child], GONE_S)
            assert not left and not mark.exists(), "the child outlived its dead parent"
        else:
            assert wait_until(mark.exists, 30), "die_with_parent ended a child whose parent is alive"
            assert proc.poll() is None
    finally:
        with contextlib.suppress(ProcessLookupError):  # the whole group may be gone already
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
