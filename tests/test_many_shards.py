"""Many corpus shards in few embedded edge folders; the model prefetch; lazy heavy imports."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from freshness.embed.embedding import Embedder
from freshness.embed.models import ModelSpec
from freshness.index.base import PointRecord
from freshness.index.edge import EdgeIndex
from freshness.integrity.verify import verify
from freshness.pipeline.search import search
from freshness.pipeline.sync import sync

REPO = Path(__file__).resolve().parents[1]


def _corpus(root: Path, shards: int) -> Path:
    for i in range(shards):
        folder = root / f"team{i:02d}"
        folder.mkdir(parents=True)
        (folder / "note.md").write_text(f"Team {i} owns the topic number {i} exclusively.")
    return root


def test_forty_shards_share_four_edge_folders_and_stay_separate(tmp_path, make_runtime):
    rt = make_runtime(_corpus(tmp_path / "corpus", 40), edge_folders=4)
    result = sync(rt)
    assert result.ok and result.totals["chunks_embedded"] == 40
    folders = rt.index.folder_names(rt.collection)
    assert 1 < len(folders) <= 4  # 40 shards, at most 4 folders on disk
    # Each shard reads only its own points, though it shares a folder with others.
    for i in (0, 17, 39):
        ids = rt.index.shard_point_ids(rt.collection, f"team{i:02d}")
        assert len(ids) == 1
    hit = search(rt, "who owns topic number 17", limit=1, shards=["team17", "team03"]).hits[0]
    assert hit.payload["shard"] in {"team17", "team03"}
    assert {h.payload["shard"] for h in search(rt, "topic", limit=50).hits} == \
        {f"team{i:02d}" for i in range(40)}
    assert all(c.ok for c in verify(rt))
    assert rt.index.shard_names(rt.collection) == [f"team{i:02d}" for i in range(40)]
    # An edit re-embeds one shard's doc and leaves its folder-mates alone.
    (tmp_path / "corpus" / "team05" / "note.md").write_text("Team 5 moved to topic 99.")
    edit = sync(rt)
    assert edit.totals["chunks_embedded"] == 1 and edit.totals["chunks_retired"] == 1
    assert all(c.ok for c in verify(rt))


def test_collections_made_before_keep_one_folder_per_shard(tmp_path):
    index = EdgeIndex(tmp_path / "qdrant")
    meta = tmp_path / "qdrant" / "collections" / "old" / "collection.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"dim": 4}))  # no "folders": the layout before
    with index.open_shard("old", "alpha") as session:
        session.upsert([PointRecord("00000000-0000-0000-0000-000000000001",
                                    np.ones(4, np.float32), {"shard": "alpha"})])
    assert index.folder_names("old") == ["alpha"]
    assert index.shard_point_ids("old", "alpha") == {"00000000-0000-0000-0000-000000000001"}
    shared = EdgeIndex(tmp_path / "qdrant", folders=8)
    shared.ensure_collection("new", 4)
    with shared.open_shard("new", "alpha") as session:
        session.upsert([PointRecord("00000000-0000-0000-0000-000000000002",
                                    np.ones(4, np.float32), {"shard": "alpha"})])
    assert shared.folder_names("new")[0].startswith("f")
    assert shared.shard_point_ids("new", "beta") == set()
    assert shared.shard_point_count("new", "alpha") == 1
    shared.drop_shard("new", "alpha")
    assert shared.shard_point_count("new", "alpha") == 0
    # The old collection keeps its layout for an index configured with shared folders.
    assert shared.folder_names("old") == ["alpha"] and shared.shard_point_count("old", "alpha") == 1


def test_prefetch_loads_once_and_a_failed_prefetch_raises_in_warm(tmp_path, embedder):
    embedder.warm()
    before = getattr(embedder, "_prefetching", None)
    embedder.prefetch()  # already loaded: no new thread
    assert getattr(embedder, "_prefetching", None) is before
    broken = Embedder(ModelSpec("broken", str(tmp_path / "missing"), "r", 256), device="cpu")
    broken.prefetch()
    broken._prefetching.join(timeout=120)
    with pytest.raises(Exception, match="missing|not|found|exist"):  # noqa: B017 - any loader error
        broken.warm()


def test_status_and_the_cli_parser_do_not_import_scipy_or_torch(tmp_path):
    code = ("import sys; from freshness.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('scipy', 'torch', 'sentence_transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]"
