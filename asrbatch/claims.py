"""Who works on which recording when several workers share one ledger.

With a shared ledger (``state.ledger`` a database URL) several ``asrbatch run`` and
``watch`` processes, on one host or many, go over the same input and output folders.  They
split the work recording by recording, at the moment each one is about to be processed:

- :meth:`Claims.take`: the run asks before it submits a recording.  The worker claims it in
  the ledger for ``state.lease`` seconds, unless another worker's claim on it is still live
  (the recording is then skipped for this pass, "claimed by <host>:<pid>").  Holding the
  claim, it reads the recording's entry again: what another worker did since this run made
  its plan (finished it, failed it, started it and died) decides what is left to do.
- :meth:`Claims.keep`: the pipeline asks between chunks and before writing the transcript.
  A thread renews every claim held every third of a lease, so a long recording, or one long
  request, never loses its claim; a worker that stalled past its lease and whose recording
  another worker took over learns it here and leaves it (the chunks already sent are kept).
- :meth:`Claims.release`: the run lets go once the recording's outcome is recorded.

A worker that dies keeps its claims until their lease runs out; then the next pass of any
worker takes them over (the chunks table keeps the finished chunks of a long recording).
The leases are timed by the database's clock.  With the SQLite ledger (one run at a time,
under the run lock) :class:`SoleClaims` stands in: everything is this run's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from asrbatch import output
from asrbatch.config import Config
from asrbatch.errors import AsrbatchError
from asrbatch.ledger import Ledger, file_sha256
from asrbatch.log import kv
from asrbatch.outcomes import FileOutcome, Outcome
from asrbatch.plan import Action, Decision, decide_one

log = logging.getLogger(__name__)


class Claims(Protocol):
    shared: bool

    def take(self, decision: Decision) -> Decision | FileOutcome:
        """The decision to process now (perhaps revised), or the outcome of leaving it to another worker."""
        ...

    def keep(self, key: str) -> str | None:
        """None while *key* is still this worker's to finish, else why not."""
        ...

    def release(self, key: str) -> None: ...

    def close(self) -> None: ...


class SoleClaims:
    """One run at a time (the SQLite ledger and its lock): every recording is this run's."""

    shared = False

    def take(self, decision: Decision) -> Decision | FileOutcome:
        return decision

    def keep(self, key: str) -> str | None:
        return None

    def release(self, key: str) -> None:
        return None

    def close(self) -> None:
        return None


def claims_for(ledger: Ledger, config: Config, *, output_dir: Path, run_id: int) -> Claims:
    """The claims of a run on *ledger*: leases when it is shared, else :class:`SoleClaims`."""
    if not ledger.shared:
        return SoleClaims()
    return LeaseClaims(ledger, run_id=run_id, max_runs=config.state.max_runs, output_dir=output_dir)


class LeaseClaims:
    """Claims with leases in a shared ledger, renewed by a thread of their own until :meth:`close`."""

    shared = True

    def __init__(
        self,
        ledger: Ledger,
        *,
        run_id: int,
        max_runs: int,
        output_dir: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.run_id = run_id
        self.max_runs = max_runs
        self.output_dir = output_dir
        self.clock = clock
        self.renew_every = ledger.lease / 3
        self._held: dict[str, float] = {}
        """Key -> when its lease was last renewed (this process's clock)."""
        self._lost: dict[str, str] = {}
        """Key -> the worker that took it over."""
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._renewer = threading.Thread(target=self._renew_all, name="asrbatch-lease", daemon=True)
        self._renewer.start()

    # -- the run's questions ----------------------------------------------------------------------

    def take(self, decision: Decision) -> Decision | FileOutcome:
        key = decision.recording.key
        claim = self.ledger.claim(key, run_id=self.run_id)
        if claim.worker != self.ledger.worker:
            reason = f"claimed by {claim.worker}"
            log.info(kv("skip", path=key, reason=reason, lease_left_s=f"{max(claim.seconds_left, 0):.0f}"))
            return FileOutcome(key, Outcome.SKIPPED, reason)
        with self._lock:
            self._held[key] = self.clock()
        if claim.taken_from:
            log.warning(kv("takeover", path=key, worker=claim.taken_from, reason="its lease ran out"))
        try:
            current = self._current(decision)
        except BaseException:
            self.release(key)
            raise
        if isinstance(current, FileOutcome):
            self.release(key)
        return current

    def _current(self, decision: Decision) -> Decision | FileOutcome:
        """*decision* as it stands now that the claim is held: another worker may have moved on since the plan."""
        recording = decision.recording
        entry = self.ledger.get(recording.key)
        if entry != decision.entry:
            known = decision.sha256
            decision = decide_one(recording, entry, self.ledger, force=False, max_runs=self.max_runs,
                                  output_dir=self.output_dir,
                                  hasher=lambda path: known if known is not None else file_sha256(path))
            if decision.action == Action.SKIP:
                reason = f"{decision.reason}, by another worker"
                log.info(kv("skip", path=recording.key, reason=reason))
                return FileOutcome(recording.key, Outcome.SKIPPED, reason)
        if entry is not None and not entry.finished and entry.output_hashes:
            # A worker that died while writing may have left temporary files; no one else writes them now.
            removed = output.remove_leftovers(self.output_dir, entry.output_hashes)
            if removed:
                log.info(kv("cleanup", path=recording.key, removed_partial=removed))
        return decision

    def keep(self, key: str) -> str | None:
        with self._lock:
            lost = self._lost.get(key)
            renewed = self._held.get(key)
        if lost is not None:
            return f"left to {lost}, which took it over when this worker's lease ran out"
        if renewed is not None and self.clock() - renewed < self.renew_every:
            return None
        # Not renewed for a while (this process stalled?): ask the ledger before going on.
        if key in self.ledger.renew_claims([key], run_id=None):
            with self._lock:
                self._held[key] = self.clock()
            return None
        claim = self.ledger.claim(key, run_id=self.run_id)
        if claim.worker != self.ledger.worker:
            with self._lock:
                self._lost[key] = claim.worker
            return f"left to {claim.worker}, which took it over when this worker's lease ran out"
        with self._lock:
            self._held[key] = self.clock()
        entry = self.ledger.get(key)
        if entry is not None and entry.finished:
            return "finished by another worker while this worker's lease had run out"
        return None

    def release(self, key: str) -> None:
        with self._lock:
            held = self._held.pop(key, None) is not None
            lost = self._lost.pop(key, None) is not None
        if not held or lost:
            return
        try:
            self.ledger.release_claim(key)
        except AsrbatchError as exc:  # the lease runs out by itself
            log.warning(kv("release_failed", path=key, reason=str(exc)))

    def close(self) -> None:
        """Stop renewing and let go of every claim still held."""
        self._closing.set()
        self._renewer.join(timeout=30)
        with self._lock:
            keys = list(self._held)
        for key in keys:
            self.release(key)

    # -- the renewing thread ----------------------------------------------------------------------

    def _renew_all(self) -> None:
        while not self._closing.wait(self.renew_every):
            with self._lock:
                keys = list(self._held)
            try:
                renewed = self.ledger.renew_claims(keys, run_id=self.run_id)
                gone = [key for key in keys if key not in renewed]
                holders = {c.key: c.worker for c in self.ledger.claims()} if gone else {}
            except AsrbatchError as exc:
                log.warning(kv("lease_renewal_failed", reason=str(exc), claims=len(keys)))
                continue
            now = self.clock()
            with self._lock:
                for key in keys:
                    if key not in self._held:
                        continue  # released meanwhile
                    if key in renewed:
                        self._held[key] = now
                    else:
                        self._lost[key] = holders.get(key, "another worker")
                        log.warning(kv("claim_lost", path=key, worker=self._lost[key]))
