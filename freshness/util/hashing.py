"""Content hashes and deterministic point ids."""

from __future__ import annotations

import hashlib
import uuid

POINT_NAMESPACE = uuid.UUID("6f1c0c2e-9a51-4d38-9d0e-5b0b6a7f3e21")


def doc_hash(text: str) -> str:
    """md5 of the document's UTF-8 text (hex): what listings and manifests compare.

    The table source computes the same value in SQL (DuckDB's `md5(content)`).
    """
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def chunk_hash(text: str) -> str:
    """sha256 of the chunk's UTF-8 text (hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def point_id(doc_id: str, content_hash: str, occurrence: int = 0) -> str:
    """uuid5 of (doc id, chunk hash, occurrence): stable while the chunk's text is.

    An unchanged chunk keeps its point when other chunks of its doc move; a changed chunk
    gets a new point, upserted before the old one is deleted.
    """
    return str(uuid.uuid5(POINT_NAMESPACE, f"{doc_id}\x1f{content_hash}\x1f{occurrence}"))


def ids_digest(ids) -> str:
    """sha256 over the sorted ids (hex): one value that changes when any id comes or goes."""
    digest = hashlib.sha256()
    for value in sorted(ids):
        digest.update(value.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
