"""Issue 13, class 6 (full disks): a clear error naming the path and the free space, nothing
half-written, never a 0-byte lease; the next run after space is freed converges.

The state root lives on a real 1 MiB tmpfs filled to the last byte (mounting needs root or
CAP_SYS_ADMIN, as in the project's CI containers), and on an ordinary folder under a
RLIMIT_FSIZE limit in a subprocess (works unprivileged: writes fail with EFBIG).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from reliability_helpers import REPO_ROOT, assert_converged, child_env

from freshness.errors import StateError
from freshness.pipeline.sync import sync
from freshness.state.lease import ShardLease


@pytest.fixture
def small_volume(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the RLIMIT_FSIZE "
                    "test covers the same code unprivileged")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(volume: Path) -> Path:
    filler = volume / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name or
            (p.name == "lease.json" and p.stat().st_size == 0)]


def test_full_state_disk_names_path_and_free_space_and_converges_after(corpus, make_runtime,
                                                                       small_volume):
    rt = make_runtime(corpus, state_root=str(small_volume / "state"))
    assert sync(rt).ok
    before = {p: p.read_bytes() for p in (small_volume / "state").rglob("manifest.json")}
    (corpus / "alpha" / "pears.md").write_text("# Pears\n\nPears ripen after picking.")
    filler = _fill(small_volume)
    result = sync(rt)
    assert not result.ok
    errors = [s.error for s in result.shards if not s.ok] + result.errors
    assert any("No space left" in e and "bytes free" in e and str(small_volume) in e
               for e in errors), errors
    assert not _leftovers(small_volume)  # no temp file, no empty lease
    assert {p: p.read_bytes() for p in before} == before  # nothing half-written
    with pytest.raises(StateError, match="bytes free"):
        ShardLease(rt.store, rt.collection, "beta").acquire(1.0)
    assert not _leftovers(small_volume)
    filler.unlink()
    assert sync(rt).ok
    assert_converged(rt)


def test_file_size_limit_gives_a_clear_error_and_no_empty_lease(tmp_path):
    script = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from freshness.errors import StateError
        from freshness.state.lease import ShardLease
        from freshness.state.store import StateStore
        store = StateStore({str(tmp_path / "state")!r})
        store.write_json({{"ok": 1}}, "probe.json")
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
        for action in (lambda: store.write_bytes(b"x" * 1000, "big.bin"),
                       lambda: ShardLease(store, "c", "alpha").acquire(1.0)):
            try:
                action()
            except StateError as exc:
                print("ERROR", exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=120)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("ERROR")]
    assert len(lines) == 2, done.stdout + done.stderr
    assert all("File too large" in ln and "bytes free" in ln for ln in lines)
    state = tmp_path / "state"
    assert not _leftovers(state) and not (state / "big.bin").exists()
    assert not list(state.rglob("lease.json"))
