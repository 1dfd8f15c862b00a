"""Shared pieces of the benchmark suite: figures, timing, machine facts, data, embedder wrappers.

A `Figure` is one reported number: the median of `n` runs, optionally with the baseline measured
in the same process and their ratio, and the target it is judged against. Every benchmark module
exposes `run(ctx) -> dict` returning `{"figures": [...], "details": {...}}`.
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tldr-replay"
QUICK_SHARDS = ("osx", "windows", "android")


@dataclass
class Figure:
    """One reported number: a median of `n` runs, with its same-process baseline and target."""

    bench: str
    metric: str
    value: float | None
    unit: str
    n: int
    baseline: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    """What every benchmark gets: sizes mode, data folder, device, scratch folder."""

    quick: bool
    data: Path
    scratch: Path
    device: str = "cpu"
    reps: int = 3
    memo: VectorMemo = field(default_factory=lambda: VectorMemo())

    @property
    def snapshot(self) -> Path:
        return self.data / "snapshot.parquet"

    @property
    def replay(self) -> Path:
        return self.data / "replay.parquet"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(values: Sequence[float], baselines: Sequence[float]) -> float:
    """Median of run-by-run ratios (run i of both was measured back to back): robust to the
    slow drifts of a shared machine, which a ratio of medians is not."""
    return median([v / b for v, b in zip(values, baselines)])


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall seconds of one call, and its result."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def peak_rss_mb() -> float:
    """Peak resident set size of this process image so far (MiB).

    Reads VmHWM from /proc/self/status: `getrusage().ru_maxrss` survives `exec`, so in a child
    started by `subprocess` it reports the *parent's* RSS at fork time when that was larger.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU, cores, memory, load, versions and commit: what a reader needs to weigh the figures."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                      .splitlines() if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem_kb = 0
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, check=False).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, text=True, capture_output=True, check=False).stdout
        if commit and dirty.strip():
            commit += f" + uncommitted changes in {len(dirty.splitlines())} tracked files"
    except OSError:
        commit = None
    packages = ("torch", "sentence-transformers", "transformers", "onnxruntime", "duckdb",
                "pyarrow", "qdrant-client", "qdrant-edge-py", "dagster", "langchain-core",
                "langchain-classic", "langchain-qdrant")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform(),
            "commit": commit, "versions": {p: _version(p) for p in packages}}


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VectorMemo:
    """text -> vector computed by the real model, shared by the benchmarks of one invocation.

    Only *unmeasured* set-up work (initial index builds before the timed steps) reads from it;
    every timed embedding is computed by the model. Timed runs may write to it.
    """

    def __init__(self) -> None:
        self.vectors: dict[str, np.ndarray] = {}
        self.hits = 0

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors):
            self.vectors[text_key(text)] = vector

    def encode(self, texts: Sequence[str], compute: Callable[[list[str]], np.ndarray]
               ) -> np.ndarray:
        """Vectors for `texts`, computing (and remembering) only the missing ones."""
        keys = [text_key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.vectors}.items())
        if missing:
            computed = compute([t for _, t in missing])
            self.vectors.update({k: v for (k, _), v in zip(missing, computed)})
        self.hits += len(texts) - len(missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([self.vectors[k] for k in keys]).astype(np.float32, copy=False)


def recording_embedder(spec, device: str, batch_size: int, memo: VectorMemo):
    """An `Embedder` that counts what it embeds, records vectors in `memo`, and reads the
    memo only while `use_memo` is set (un-timed set-up)."""
    from freshness.embed.embedding import Embedder

    class RecordingEmbedder(Embedder):
        use_memo = False
        texts_embedded = 0
        calls = 0
        seconds = 0.0

        def encode(self, texts, progress=None):  # noqa: D401 - same contract as Embedder
            if self.use_memo:
                return memo.encode(list(texts), lambda t: super(RecordingEmbedder, self)
                                   .encode(t))
            self.calls += 1
            self.texts_embedded += len(texts)
            started = time.perf_counter()
            vectors = super().encode(texts, progress)
            self.seconds += time.perf_counter() - started
            memo.put(texts, vectors)
            return vectors

    return RecordingEmbedder(spec, device=device, batch_size=batch_size)


def settings_for(root: Path, device: str, batch_size: int = 64):
    """Settings with state and embedded index under `root`."""
    from freshness.config import Settings

    return Settings(state_root=str(root / "state"), index_path=str(root / "qdrant"),
                    device=device, batch_size=batch_size, lock_timeout_s=30.0)


def snapshot_docs(snapshot: Path, shards: Sequence[str] | None = None):
    """The snapshot's docs (doc_id, shard, content), optionally of some shards, by doc_id."""
    import duckdb

    where = ""
    if shards:
        where = "WHERE shard IN (" + ", ".join(f"'{s}'" for s in shards) + ")"
    return duckdb.connect().sql(
        f"SELECT path AS doc_id, shard, content FROM read_parquet('{snapshot}') {where} "
        "ORDER BY path").to_arrow_table()


def chunk_texts(docs, limit: int | None = None, stride: int = 1) -> list[str]:
    """Chunk texts of `docs` with the production chunker (every `stride`-th, up to `limit`)."""
    from freshness.embed.chunking import Chunker
    from freshness.embed.models import resolve_model

    spec = resolve_model()
    texts = Chunker.for_model(spec.location, spec.max_seq_length).chunk_docs(docs)["text"]
    picked = texts.to_pylist()[::stride]
    return picked[:limit] if limit else picked


def path_fraction(path: str) -> float:
    """A stable pseudo-random number in [0, 1) per path: nested subsets by threshold."""
    return int(hashlib.md5(path.encode()).hexdigest()[:8], 16) / 2**32


def churn_steps(changes: list[dict], start_seq: int, n_docs: int, fraction: float,
                count: int, keep: Callable[[dict], bool]) -> list[tuple[int, int, int]]:
    """`count` consecutive commit ranges (after, through, docs touched), each the shortest run
    of whole commits from its start touching >= fraction × n_docs distinct kept docs."""
    target = max(1, round(fraction * n_docs))
    rows = [r for r in changes if r["commit_seq"] > start_seq and keep(r)]
    steps, touched, after = [], set(), start_seq
    for i, row in enumerate(rows):
        touched.add(row["path"])
        commit_ends = i + 1 == len(rows) or rows[i + 1]["commit_seq"] != row["commit_seq"]
        if commit_ends and len(touched) >= target:
            steps.append((after, row["commit_seq"], len(touched)))
            after, touched = row["commit_seq"], set()
            if len(steps) == count:
                break
    return steps
