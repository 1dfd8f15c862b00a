"""The qdrant-client backend (the server path), exercised through qdrant-client's local mode."""

from freshness.index.client import ClientIndex
from freshness.integrity.verify import verify
from freshness.pipeline.search import search
from freshness.pipeline.sync import sync


def test_sync_edit_delete_and_alias_through_qdrant_client(corpus, make_runtime):
    index = ClientIndex(url=":memory:")
    rt = make_runtime(corpus, index=index)
    first = sync(rt)
    assert first.ok and index.resolve_alias("chunks") == rt.collection
    (corpus / "beta" / "boats.md").write_text("# Boats\n\nSailboats need wind to move.")
    (corpus / "alpha" / "pears.md").unlink()
    second = sync(rt)
    assert second.totals["chunks_embedded"] == 1 and second.totals["docs_deleted"] == 1
    hit = search(rt, "sailing boats and wind", limit=1).hits[0]
    assert "Sailboats" in hit.payload["text"] and hit.payload["shard"] == "beta"
    only_alpha = search(rt, "boats", limit=5, shards=["alpha"]).hits
    assert only_alpha and all(h.payload["shard"] == "alpha" for h in only_alpha)
    assert all(c.ok for c in verify(rt, deep=True))


def test_model_change_flips_a_real_qdrant_alias(corpus, make_runtime):
    index = ClientIndex(url=":memory:")
    old = make_runtime(corpus, index=index)
    sync(old)
    new = make_runtime(corpus, index=index, model_revision="v2-test")
    sync(new, ["alpha"])
    assert index.resolve_alias("chunks") == old.collection
    sync(new, ["beta"])
    assert index.resolve_alias("chunks") == new.collection
    assert set(index.collections()) == {old.collection, new.collection}
