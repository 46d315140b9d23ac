"""The trainer's endless batch stream: epochs of a loader, with a resumable (epoch, index) position."""

from __future__ import annotations

from collections.abc import Iterable


class BatchStream:
    """Endless batches from ``source``, epoch after epoch, with a resumable (epoch, index) position."""

    def __init__(self, source: Iterable[dict]):
        self.source, self.epoch, self.index = source, 0, 0
        self._it, self._skip, self._restored = None, 0, False

    def __next__(self) -> dict:
        for _ in range(2):  # at most one epoch boundary per batch; a fresh empty epoch is an error
            if self._it is None:
                if hasattr(self.source, "set_epoch") and not self._restored:
                    self.source.set_epoch(self.epoch)
                self._restored = False
                self._it = iter(self.source)
                for _ in range(self._skip):  # stateless source: replay up to the saved position
                    next(self._it)
                self._skip = 0
            try:
                batch = next(self._it)
            except StopIteration:
                self._it, self.epoch, self.index = None, self.epoch + 1, 0
                continue
            self.index += 1
            return batch
        raise ValueError(f"the training data yielded no batches in epoch {self.epoch} "
                         "(too few videos for one batch? check --data/--batch-size)")

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "index": self.index}
        if hasattr(self.source, "state_dict"):
            state["loader"] = self.source.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index, self._it = state["epoch"], state["index"], None
        if "loader" in state and hasattr(self.source, "load_state_dict"):
            self.source.load_state_dict(state["loader"])  # the loader restores epoch and position itself
            self._restored = True
        else:
            self._skip = self.index
