"""What readers do with a bad record: raise it (naming the file and line), or with ``skip_invalid`` log it,
count it and go on (``docs/architecture.md``: never skip silently)."""
from __future__ import annotations

import logging

from facetrack.errors import DataError


class Skips:
    """``skip(exc)`` re-raises a record's DataError unless skipping, else logs "skipping invalid <what>: ..." and
    counts it; ``report(where)`` logs "<where>: skipped N invalid <plural>" when anything was skipped."""

    def __init__(self, skip_invalid: bool, logger: logging.Logger, what: str, plural: str) -> None:
        self.skip_invalid, self.logger, self.what, self.plural = skip_invalid, logger, what, plural
        self.count = 0

    def __call__(self, exc: DataError) -> None:
        if not self.skip_invalid:
            raise exc
        self.count += 1
        self.logger.warning("skipping invalid %s: %s", self.what, exc)

    def report(self, where: object) -> int:
        if self.count:
            self.logger.warning("%s: skipped %d invalid %s", where, self.count, self.plural)
        return self.count
