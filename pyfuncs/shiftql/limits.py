"""What one translation may cost, and where it lets PostgreSQL cancel it.

The translator runs inside a backend, where Python is not interrupted by a cancel
or a statement_timeout, and its memory grows with the tree: a text of half a million
OR terms once took a backend past 6 GB. So a text is measured before sqlglot
tokenizes it, its tokens before they are parsed, and its parsed nodes before any
pass copies or rewrites them; each limit is far above what a query written by hand
(a few hundred tokens) or generated with thousands of model ids needs
(docs/shiftql.md). Between stages, and every CHECK_SECONDS while parsing or
translating, a cheap query lets PostgreSQL act on a pending cancel.
"""

import time

from ..errors import PROGRAM_LIMIT_EXCEEDED, STATEMENT_TOO_COMPLEX, ShiftError

MAX_TEXT_CHARS = 262_144   # 256 Ki characters
MAX_TOKENS = 50_000
MAX_NODES = 50_000         # nodes of the parsed tree, before the passes copy it
CHECK_SECONDS = 0.05       # work between two cancellation checks

_HINT = "split the query, or put long lists of ids in a table and select from it"


def require_text_size(text, what="SHiFT-QL text"):
    if len(text) > MAX_TEXT_CHARS:
        raise ShiftError("%s of %d characters is longer than the limit of %d" % (what, len(text), MAX_TEXT_CHARS),
                         PROGRAM_LIMIT_EXCEEDED, hint=_HINT)


def require_token_count(count, what="SHiFT-QL text"):
    if count > MAX_TOKENS:
        raise ShiftError("%s of %d tokens is more than the limit of %d" % (what, count, MAX_TOKENS),
                         STATEMENT_TOO_COMPLEX, hint=_HINT)


def require_node_count(tree, interrupts=None, what="SHiFT-QL text"):
    """Counts at most one node past the limit, so a huge tree costs no more than a big one."""
    count = 0
    for count, _ in enumerate(tree.walk(), start=1):
        if count > MAX_NODES:
            raise ShiftError("%s parses to more than the limit of %d syntax nodes" % (what, MAX_NODES),
                             STATEMENT_TOO_COMPLEX, hint=_HINT)
        if interrupts is not None:
            interrupts.step()
    return count


class Interrupted(BaseException):
    """A cancel PostgreSQL raised in a check: past every `except Exception` on the way out, then re-raised."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


class Interrupts:
    """Calls `check` (a cheap query; None outside a database) now, or at a step once `seconds` have passed."""

    def __init__(self, check=None, seconds=None):
        self._check, self.seconds = check, CHECK_SECONDS if seconds is None else seconds
        self._last = time.monotonic()

    def check(self):
        self._last = time.monotonic()
        if self._check is None:
            return
        try:
            self._check()
        except Exception as error:  # noqa: BLE001 -- PostgreSQL's own error (query_canceled), kept whole
            raise Interrupted(error) from None

    def step(self):
        if time.monotonic() - self._last >= self.seconds:
            self.check()
