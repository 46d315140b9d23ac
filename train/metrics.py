"""Training metrics: one JSON line per logged step (RUN/metrics.jsonl) and TensorBoard scalars.

Step time is split into *data wait* (blocked on the loader) and *compute* (transfer, forward,
backward, optimizer step): a data-wait fraction near 0 means the loader keeps up.
"""

from __future__ import annotations

import time
from pathlib import Path

from rhovid.atomic import append_jsonl, atomic_write_text, read_jsonl


class StepTimer:
    """Accumulates data-wait and compute seconds between two ``pop()`` calls."""

    def __init__(self):
        self.data_s = 0.0
        self.compute_s = 0.0
        self.steps = 0
        self._t = time.perf_counter()

    def mark_data(self) -> None:
        """Call when the batch has arrived: the time since the last mark was data wait."""
        now = time.perf_counter()
        self.data_s += now - self._t
        self._t = now

    def mark_compute(self, step_done: bool = True) -> None:
        """Call when the step's work has finished (after a device sync).

        ``step_done=False`` books the time since the last mark as compute without counting a step
        (the loop's own logging work, so it is not mistaken for data wait).
        """
        now = time.perf_counter()
        self.compute_s += now - self._t
        self._t = now
        self.steps += int(step_done)

    def restart(self) -> None:
        """Start the next interval now, discarding the time since the last mark (e.g. checkpointing)."""
        self._t = time.perf_counter()

    def pop(self) -> dict:
        """Mean per-step times since the last pop, and the data-wait fraction; then reset."""
        n = max(self.steps, 1)
        total = self.data_s + self.compute_s
        out = {"data_s": self.data_s / n, "compute_s": self.compute_s / n,
               "data_frac": self.data_s / total if total > 0 else 0.0,
               "steps_per_s": self.steps / total if total > 0 else 0.0}
        self.data_s = self.compute_s = 0.0
        self.steps = 0
        return out


class MetricsWriter:
    """Writes records to ``RUN/metrics.jsonl`` and TensorBoard event files in ``RUN/``.

    Only rank 0 writes (``enabled=False`` elsewhere). On resume at step k, records after k (logged
    after the checkpoint the run resumes from) are dropped from both sinks, so the files describe
    exactly one trajectory.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(_line(r) for r in kept))
        from torch.utils.tensorboard import SummaryWriter

        # purge_step discards TensorBoard events at or beyond the resume step.
        self.tb = SummaryWriter(log_dir=str(run_dir), purge_step=None if resume_step is None else resume_step + 1)

    def log(self, step: int, record: dict) -> None:
        """Append ``{"step": step, **record}``; nested dicts become ``a/b`` TensorBoard tags."""
        if not self.enabled:
            return
        append_jsonl(self.path, {"step": step, **record})
        for tag, value in _flatten(record):
            self.tb.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None


def _flatten(record: dict, prefix: str = ""):
    for k, v in record.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}/")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield f"{prefix}{k}", v


def _line(record: dict) -> str:
    import json

    return json.dumps(record) + "\n"
