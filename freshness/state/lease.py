"""Per-shard leases: one run at a time writes a shard's points and commits its manifest.

A run takes `collections/<collection>/shards/<shard>/lease.json` (owner id, pid, host,
expires_at) before its apply phase (index writes, then the manifest commit) and drops it after
the commit. A second run of the same shard waits for it (up to `wait_s`, the
`FRESHNESS_LOCK_TIMEOUT_S` setting) and then fails with a message naming the shard and the
holder. When the lease comes free but the manifest moved while the run waited, the run stops
before writing anything: its plan is out of date, and a rerun embeds only what is still
missing. Before the index writes, `index_checked_at` is dropped from manifest.json (the commit
writes it back), so a run killed mid-apply makes the next run read the index, not trust the
manifest's point ids.

Local state roots take the lease with an exclusive create (`O_CREAT | O_EXCL`). A lease whose
holder is gone is broken: at once when the holder was a process on this host that no longer
exists (a killed run), otherwise once `expires_at` has passed. Object stores (s3://, gs://)
have no conditional write in pyarrow, so there the lease is advisory (written, then read back
to confirm); the guard on object stores is Dagster's run limits (`pool="gpu"` and the
per-partition tag concurrency limit in deploy/dagster.postgres.yaml), and the manifest's
version check refuses a commit that lost a race in any case.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from freshness.errors import StateError
from freshness.state import layout
from freshness.state.store import StateStore, make_dirs, write_synced
from freshness.util.disk import is_no_space, no_space_message
from freshness.util.faults import fault_point
from freshness.util.shard_names import shard_name_problem
from freshness.util.timeutil import as_utc, iso, utc_now

T = TypeVar("T")
LEASE_FILE = "lease.json"
DEFAULT_TTL_S = 900.0  # longest apply phase a holder on another host is trusted with
UNREADABLE_GRACE_S = 5.0  # a lease file still empty after this was left by a killed writer
HOST = socket.gethostname()
INDEX_CHECK_KEY = "index_checked_at"  # manifest.json: when sync last read the shard's point ids


class LeaseHeldError(StateError):
    """Another run holds the shard's lease (or committed the shard while this run waited)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def describe(holder: dict) -> str:
    """`run <owner> (pid P on host H, expires at T)` for messages."""
    return (f"run {holder.get('owner', '?')} (pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')}, lease expires at {holder.get('expires_at', '?')})")


class ShardLease:
    """The lease of one shard of one collection; use `with lease.held(wait_s):`."""

    def __init__(self, store: StateStore, collection: str, shard: str,
                 ttl_s: float = DEFAULT_TTL_S, owner: str | None = None) -> None:
        self.store, self.collection, self.shard, self.ttl_s = store, collection, shard, ttl_s
        self.owner = owner or uuid.uuid4().hex[:12]
        problem = shard_name_problem(shard)
        if problem:  # the segment codec would make it safe; a lease for it is still a bug
            raise StateError(f"unsafe state path segment for a lease: {problem}")
        self.segments = (*layout.shard_dir(collection, shard), LEASE_FILE)
        self.path = store.path(*self.segments)  # validates every segment (no escaping root)

    # -- reading ---------------------------------------------------------------------------
    def holder(self) -> dict | None:
        """The current lease as written, `{}` when unreadable, None when there is none."""
        raw = self.store.read_bytes(*self.segments)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _stale(self, holder: dict, now: datetime) -> bool:
        if not holder:  # empty or garbage: a writer killed between create and write
            return self._age_s() > UNREADABLE_GRACE_S
        if holder.get("host") == HOST and isinstance(holder.get("pid"), int) \
                and not _pid_alive(holder["pid"]):
            return True
        expires = as_utc(holder.get("expires_at"))
        return expires is None or expires <= now

    def _age_s(self) -> float:
        info = self.store.fs.get_file_info(self.path)
        mtime = info.mtime.timestamp() if info.mtime else time.time()
        return time.time() - mtime

    # -- writing ---------------------------------------------------------------------------
    def _record(self) -> bytes:
        now = utc_now()
        return json.dumps({
            "owner": self.owner, "pid": os.getpid(), "host": HOST, "shard": self.shard,
            "collection": self.collection, "acquired_at": iso(now),
            "expires_at": iso(now + timedelta(seconds=self.ttl_s)),
        }, indent=2).encode()

    def _try_create(self) -> bool:
        if not self.store.local:
            if self.store.exists(*self.segments):
                return False
            self.store.write_bytes(self._record(), *self.segments)
            time.sleep(0.2)  # let a racing writer land, then see who won
            return (self.holder() or {}).get("owner") == self.owner
        # Written whole to a private file, then linked into place: the link is the exclusive
        # create, so the lease is never seen empty (a full disk fails the private write).
        tmp = f"{self.path}.tmp-{self.owner}"
        try:
            make_dirs(Path(self.path).parent)
            write_synced(tmp, self._record())
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        except OSError as exc:
            if is_no_space(exc):
                raise StateError(no_space_message(self.path, exc, "take the lease")) from exc
            raise
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def _break(self, stale: dict) -> None:
        """Remove a stale lease, unless someone replaced it since we read it."""
        if not self.store.local:
            if self.holder() == stale:
                self.store.delete(*self.segments)
            return
        tomb = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, tomb)
        except FileNotFoundError:
            return  # another waiter broke it first
        try:
            with open(tomb, "rb") as src:
                taken = json.loads(src.read() or b"{}")
        except ValueError:
            taken = {}
        if taken != stale:  # we moved a fresh lease: put it back unless the slot was retaken
            try:
                os.link(tomb, self.path)
            except FileExistsError:
                pass
        os.unlink(tomb)

    def acquire(self, wait_s: float) -> None:
        """Take the lease, waiting up to `wait_s` for a live holder; LeaseHeldError after."""
        deadline, delay = time.monotonic() + wait_s, 0.05
        while True:
            if self._try_create():
                return
            holder = self.holder()
            if holder is None:
                continue  # released between our create and our read: try again at once
            if self._stale(holder, utc_now()):
                self._break(holder)
                continue
            if time.monotonic() >= deadline:
                raise LeaseHeldError(
                    f"shard {self.shard!r} is being synced by {describe(holder)}; waited "
                    f"{wait_s:.0f}s: rerun when it finishes (raise FRESHNESS_LOCK_TIMEOUT_S to "
                    f"wait longer; a killed holder's lease is taken over at once on the same "
                    f"host, else after it expires, or delete {self.path})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def release(self) -> None:
        """Drop the lease if this run still holds it."""
        holder = self.holder()
        if holder and holder.get("owner") == self.owner:
            self.store.delete(*self.segments)


def run_leased(store: StateStore, collection: str, shard: str, planned_version: int,
               wait_s: float, apply: Callable[[], T]) -> T:
    """Run `apply` (a shard's index writes and commit) while holding the shard's lease.

    Refuses with LeaseHeldError, before `apply` writes anything, when the shard's committed
    version is no longer `planned_version` (another run committed it while this one waited).
    """
    lease = ShardLease(store, collection, shard)
    lease.acquire(wait_s)
    folder = layout.shard_dir(collection, shard)
    try:
        fault_point("lease_taken")
        current = store.read_json(*folder, layout.MANIFEST_FILE)
        version = int(current.get("version", 0)) if current else 0
        if version != planned_version:
            raise LeaseHeldError(
                f"shard {shard!r} was committed by another run (version {planned_version} -> "
                f"{version}) while this run waited for its lease; nothing was written: rerun "
                "it (the points that run wrote are found, not embedded again)"
            )
        if current and INDEX_CHECK_KEY in current:
            # The index is about to change: until this apply commits, the manifest's last
            # index check must not be trusted (a crash or failure here leaves it dropped, so
            # the next run reads the shard's point ids from the index, not the manifest).
            store.write_json({k: v for k, v in current.items() if k != INDEX_CHECK_KEY},
                             *folder, layout.MANIFEST_FILE)
        return apply()
    finally:
        lease.release()
