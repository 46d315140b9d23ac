"""The trainer's endless batch stream: epochs of a loader, with a resumable position.

One owner per epoch number (issue 13 item 1). A *stateful* source (``ClipLoader``, or anything
with ``epoch``, ``position`` (batches consumed in that epoch), ``state_dict()`` and
``load_state_dict()``) owns its position: iterating it after it finished an epoch starts the next
one, and its ``state_dict()`` is the whole resume position. The stream then only re-iterates it
and reports ``source.epoch`` and ``source.position``. Before, both counted: after a
resume from the last batch of an epoch the loader moved on by itself while the stream still held
the old number and set it again, so the next epoch was trained twice.

Any other iterable (a list of batches) is *replayed*: the stream counts (epoch, index) itself
and, after a resume, skips the batches of the epoch already consumed.
"""

from __future__ import annotations

from collections.abc import Iterable

from rhovid.errors import UsageError


class NoBatchesError(UsageError):
    """An epoch of the training data yielded no batch at all."""


def is_stateful(source) -> bool:
    """True when ``source`` keeps its own epoch and resume position (see the module docstring)."""
    return all(hasattr(source, a) for a in ("epoch", "position", "state_dict", "load_state_dict"))


class BatchStream:
    """Endless batches from ``source``, epoch after epoch, with a resumable position."""

    def __init__(self, source: Iterable[dict]):
        self.source = source
        self.stateful = is_stateful(source)
        self._epoch, self._index, self._skip = 0, 0, 0  # replayed sources only
        self._it = None

    @property
    def epoch(self) -> int:
        """Epoch of the batch returned last (the source's own count when it is stateful)."""
        return int(self.source.epoch) if self.stateful else self._epoch

    @property
    def index(self) -> int:
        """Batches of that epoch returned so far (1 after its first batch)."""
        return int(self.source.position) if self.stateful else self._index

    def __next__(self) -> dict:
        for _ in range(2):  # at most one epoch boundary per batch; a fresh empty epoch is an error
            if self._it is None:
                if not self.stateful and hasattr(self.source, "set_epoch"):
                    self.source.set_epoch(self._epoch)
                self._it = iter(self.source)  # a stateful source moves to its next epoch here
                for _ in range(self._skip):  # replayed source: skip what was consumed before a resume
                    next(self._it)
                self._skip = 0
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                if not self.stateful:
                    self._epoch, self._index = self._epoch + 1, 0
                continue
            self._index += not self.stateful
            return batch
        raise NoBatchesError(f"the training data yielded no batches in epoch {self.epoch} "
                             "(fewer videos than one batch? lower --batch-size or add videos to --data)")

    def state_dict(self) -> dict:
        """``{"loader": source position}`` for a stateful source, else ``{"epoch", "index"}``."""
        if self.stateful:
            return {"loader": self.source.state_dict()}
        return {"epoch": self._epoch, "index": self._index}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a ``state_dict()`` position (also one written before the epoch had one owner)."""
        self._it = None
        if self.stateful:
            self.source.load_state_dict(state["loader"])
        else:
            self._epoch, self._index = int(state["epoch"]), int(state["index"])
            self._skip = self._index
