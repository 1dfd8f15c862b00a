"""The operations on a corpus: detect what changed, diff against the manifest, sync (embed and
write), search.
"""
