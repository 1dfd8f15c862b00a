"""Smoke test of the benchmark suite at toy sizes (not a benchmark): keeps the code running.

Skips the parts whose optional `bench` dependencies (onnxruntime, onnx, LangChain) are missing.
"""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import Context, Figure, churn_steps, path_fraction
from benchmarks.report import markdown

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tldr-replay"


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def test_churn_steps_take_whole_commits_until_the_share_is_reached():
    changes = [{"commit_seq": s, "path": p, "shard": "a"} for s, p in
               [(1, "x"), (2, "y"), (2, "z"), (3, "x"), (4, "w"), (4, "v"), (4, "u")]]
    steps = churn_steps(changes, 0, 100, 0.02, 3, lambda r: True)
    assert steps == [(0, 2, 3), (2, 4, 4)]
    assert 0 <= path_fraction("pages/common/tar.md") < 1


def test_report_renders_figures_and_errors():
    fig = Figure("x", "metric", 1.5, "s", 3, 3.0, 0.5, "<= 1", True, "note")
    results = {"command": "c", "started_at": "t", "wall_seconds": 1.0,
               "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 1, "python": "3",
                           "load_average_start": [0], "commit": "abc", "versions": {"a": "1"}},
               "benchmarks": {"x": {"figures": [fig.as_dict()], "seconds": 1.0},
                              "y": {"figures": [], "error": "boom", "seconds": 0.0}}}
    text = markdown(results)
    assert "| x | metric | 1.5 | s | 3 | 3 | 0.5 | <= 1 | yes | note |" in text
    assert "boom" in text
    json.dumps(results)


def test_diff_bench_ours_and_baseline_agree(tmp_path):
    from benchmarks import diff_bench

    diff_bench.generate(tmp_path, 2000)
    ours, base = (diff_bench.measure(tmp_path, m, 1) for m in ("ours", "baseline"))
    assert ours["counts"] == base["counts"] == {"added": 10, "deleted": 10, "modified": 60,
                                                "unchanged": 1930}
    assert ours["peak_rss_mb"] > 0 and "hash_s" in ours["stages"]


def test_sensor_decision_path_on_synthetic_summaries(tmp_path):
    from datetime import datetime, timezone

    from benchmarks.sensor_bench import summaries
    from freshness.policy.cadence import decide
    from freshness.state.store import StateStore

    now = datetime.now(timezone.utc)
    state = summaries([f"s{i:03d}" for i in range(200)], now)
    decision = decide(state, now, 3600.0, StateStore(str(tmp_path)))
    assert {v.shard for v in decision.verdicts} == {s.shard for s in state}


def test_gpu_bench_explains_a_missing_gpu():
    from benchmarks.gpu_bench import cuda_problem

    assert cuda_problem("cpu") is None
    problem = cuda_problem("cuda")
    assert problem is None or "CUDA" in problem or "torch" in problem


def test_onnx_overlap_metric():
    from benchmarks.onnx_bench import queries_from, top_k_overlap

    rng = np.random.default_rng(0)
    corpus, queries = rng.normal(size=(30, 8)), rng.normal(size=(5, 8))
    assert top_k_overlap(queries, corpus, queries, corpus, k=10) == 1.0
    import pyarrow as pa

    docs = pa.table({"content": ["# tar\n\n> Archiving utility.\n\n- x"]})
    assert queries_from(docs, 5) == ["tar: Archiving utility."]


class _FakeModel:
    """Deterministic unit vectors per text: LangChain plumbing without the real model."""

    def encode(self, texts, **_):
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=384) for t in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), 384)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.skipif(not _has("langchain_core", "langchain_classic", "langchain_qdrant"),
                    reason="LangChain peers not installed (the optional `bench` extra)")
@pytest.mark.skipif(not (DATA / "snapshot.parquet").exists(), reason="no tldr-replay data")
def test_langchain_scoped_full_leaves_deleted_docs(tmp_path):
    from benchmarks.langchain_bench import scoped_full_check
    from benchmarks.langchain_peer import ReplayCorpus
    from freshness.embed.chunking import Chunker
    from freshness.embed.models import resolve_model

    spec = resolve_model()
    corpus = ReplayCorpus(DATA / "snapshot.parquet", DATA / "replay.parquet", ["android"])
    ctx = Context(quick=True, data=DATA, scratch=tmp_path)
    chunker = Chunker.for_model(spec.location, spec.max_seq_length)
    result = scoped_full_check(ctx, corpus, _FakeModel(), chunker)
    assert result["left_in_index"]["scoped_full"] == sorted(result["deleted_docs"])
    assert result["left_in_index"]["full"] == []


@pytest.mark.skipif(not _has("onnxruntime", "onnx"), reason="onnxruntime/onnx not installed")
def test_onnx_export_matches_torch(tmp_path, embedder):
    from benchmarks.onnx_embedder import OnnxEmbedder, export, quantize

    path = export(embedder.spec.location, tmp_path / "model.onnx")
    texts = ["tar: Archiving utility.", "Robots dock at night.\n\nThey charge there."]
    reference = embedder.encode(texts)
    for model in (path, quantize(path, tmp_path / "int8.onnx")):
        vectors = OnnxEmbedder(model, embedder.spec.location).encode(texts)
        cosines = np.sum(vectors * reference, axis=1)
        assert vectors.shape == reference.shape and math.isclose(
            float(np.linalg.norm(vectors[0])), 1.0, rel_tol=1e-4)
        assert cosines.min() > (0.9999 if model == path else 0.9)


def test_source_bench_no_op_listings_read_nothing(tmp_path):
    from benchmarks import source_bench

    figures, details = source_bench.bench_git(tmp_path / "git", 200, 1)
    assert details["noop_blobs_read"] == 0 and details["cold_blobs_read"] == 200
    assert details["changed_docs_hashed"] == 10 and all(f.met is not False for f in figures)
    (tmp_path / "folder").mkdir()
    figures, _ = source_bench.bench_folder(tmp_path / "folder", 200, 1)
    assert figures[0].met


def test_scale_bench_corpus_churn_exponent_and_tiny_model(tmp_path):
    from benchmarks.scale_bench import churn, fit_exponent, write_folder, write_table
    from benchmarks.tiny_model import TINY_DIM, build_tiny_model
    from freshness.embed.embedding import Embedder
    from freshness.embed.models import resolve_model

    write_folder(tmp_path / "corpus", 30)
    files = sorted((tmp_path / "corpus").rglob("*.md"))
    before = {f: f.read_text() for f in files}
    assert len(files) == 30 and churn(tmp_path / "corpus", 30, 0.1, seed=1) == 3
    assert sum(before[f] != f.read_text() for f in files) == 3
    write_table(tmp_path / "docs.parquet", 20)
    assert churn(tmp_path / "docs.parquet", 20, 0.1, seed=2) == 2
    assert fit_exponent([10, 100], [1.0, 10.0]) == pytest.approx(1.0)
    assert fit_exponent([10, 100], [2.0, 2.0]) == pytest.approx(0.0, abs=1e-9)
    model = build_tiny_model(tmp_path / "tiny")
    vectors = Embedder(resolve_model(str(model)), device="cpu").encode(["a b", "c d"])
    assert vectors.shape == (2, TINY_DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
