"""A tiny random sentence-transformers model for scale benchmarks (bookkeeping, not quality).

One BERT layer of width 32 with MiniLM's tokenizer and vocabulary, random weights (seeded),
mean pooling and normalization: loads and embeds through exactly the same sentence-transformers
code path as a real model, at a small fraction of its cost, so that the sync's own bookkeeping
(listing, diff, manifests, index writes) shows in the timings. Its vectors mean nothing.
"""

from __future__ import annotations

from pathlib import Path

TINY_DIM = 32


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write the model to `folder` (once; reused when already there) and return it."""
    folder = Path(folder)
    if (folder / "modules.json").exists():
        return folder
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from freshness.embed.models import resolve_model

    torch.manual_seed(seed)
    source = resolve_model().location
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=TINY_DIM,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=512)
    raw = folder.parent / f"{folder.name}-hf"
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    word = models.Transformer(str(raw), max_seq_length=256)
    model = SentenceTransformer(modules=[word, models.Pooling(TINY_DIM, "mean"),
                                         models.Normalize()], device="cpu")
    model.save(str(folder))
    return folder
