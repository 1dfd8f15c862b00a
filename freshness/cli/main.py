"""`freshness` command line: sync, detect, status, search, verify, repair, simulate,
histogram, demo-corpus."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from freshness.cli import histogram as cli_histogram
from freshness.cli.common import add_common_options, settings_from_args
from freshness.errors import FreshnessError
from freshness.runtime import Runtime


def _progress_bar():
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int, _seconds: float) -> None:
        nonlocal bar
        bar = bar or tqdm(total=total, unit="chunk", desc="embedding")
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def cmd_sync(args: argparse.Namespace, rt: Runtime) -> int:
    if args.steps:
        return _cmd_replay_steps(args, rt)
    from freshness.pipeline.sync import sync

    result = sync(rt, args.shard or None, progress=_progress_bar())
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        t = summary["totals"]
        print(f"collection {result.collection} (serving: {result.serving_collection})")
        for shard in result.shards:
            c = shard.counts
            state = "ok" if shard.ok else f"FAILED: {shard.error}"
            print(f"  {shard.shard:<20} docs +{c['docs_added']} ~{c['docs_modified']} "
                  f"-{c['docs_deleted']} ={c['docs_unchanged']} skipped {c['docs_skipped']} | "
                  f"chunks embedded {c['chunks_embedded']} kept {c['chunks_kept']} "
                  f"retired {c['chunks_retired']} | {state}")
        print(f"total: {t.get('chunks_embedded', 0)} chunks embedded in "
              f"{summary['embed_seconds']}s, {t.get('chunks_retired', 0)} retired, "
              f"{len(summary['skipped'])} skipped inputs")
        for skip in summary["skipped"]:
            print(f"  skipped {skip['doc_id']}: {skip['reason']}")
        for shard in result.retired_shards:
            print(f"  retired {shard}: gone from the source (points deleted, state archived)")
        for error in result.errors:
            print(f"error: {error}", file=sys.stderr)
    return 0 if result.ok else 1


def _cmd_replay_steps(args: argparse.Namespace, rt: Runtime) -> int:
    from freshness.integrity.replay_check import replay
    from freshness.sources.replay import ReplaySource

    if not isinstance(rt.source, ReplaySource):
        raise FreshnessError("--steps needs a replay source: pass --snapshot and --replay")
    first, _, rest = args.steps.partition(":")
    last, _, step = rest.partition(":")
    report = replay(rt, rt.source, int(first), int(last), int(step or 1),
                    on_step=None if args.json else lambda s, r, e: print(
                        f"seq {s}: embedded {r.totals.get('chunks_embedded', 0)} "
                        f"(changed {e if e >= 0 else 'n/a'}), "
                        f"deleted docs {r.totals.get('docs_deleted', 0)}", flush=True))
    summary = {k: v for k, v in report.__dict__.items()} | {"ok": report.ok}
    print(json.dumps(summary, indent=2, default=str))
    return 0 if report.ok else 1


def cmd_detect(args: argparse.Namespace, rt: Runtime) -> int:
    from freshness.pipeline.detect import detect

    discovery, pending = detect(rt, args.shard or None)
    rows = [p.as_dict() for p in pending]
    if args.json:
        print(json.dumps({"shards": rows, "skipped": [s.__dict__ for s in discovery.skips]},
                         indent=2, default=str))
    else:
        for row in rows:
            print(f"{row['shard']:<20} pending {row['pending_docs']:>5} (+{row['added']} "
                  f"~{row['modified']} -{row['deleted']}) oldest {row['oldest_pending_change']}")
    return 0


def cmd_status(args: argparse.Namespace, rt: Runtime) -> int:
    from freshness.state.status import shard_status

    table = shard_status(rt.shard_state())
    rows = table.to_pylist()
    code = 1 if any(r["state_error"] for r in rows) else 0  # a shard's state is unreadable
    if args.json:
        print(json.dumps({"collection": rt.collection, "serving": rt.serving_collection(),
                          "shards": rows}, indent=2, default=str))
        return code
    print(f"collection {rt.collection} (serving: {rt.serving_collection()})")
    print(f"{'shard':<20}{'docs':>7}{'chunks':>8}{'pending':>9}  {'last source change':<26}"
          f"{'last embedded':<26}oldest pending")

    def fmt(t) -> str:
        return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t else "-"

    for r in rows:
        if r["state_error"]:
            print(f"{r['shard']:<20}state unreadable: {r['state_error']}")
            continue
        print(f"{r['shard']:<20}{r['docs']:>7}{r['chunks']:>8}{r['pending_docs']:>9}  "
              f"{fmt(r['last_source_change_seen']):<26}{fmt(r['last_embedded_at']):<26}"
              f"{fmt(r['oldest_pending_change'])}")
    return code


def cmd_search(args: argparse.Namespace, rt: Runtime) -> int:
    from freshness.pipeline.search import search

    result = search(rt, args.query, args.limit, args.shard or None)
    if args.json:
        print(json.dumps({"collection": result.collection, "skipped_shards":
                          result.skipped_shards, "problems": result.problems,
                          "hits": [h.__dict__ for h in result.hits]},
                         indent=2, default=str))
        return 1 if result.problems else 0
    for hit in result.hits:
        p = hit.payload
        text = " ".join(str(p.get("text", "")).split())
        print(f"{hit.score:.3f}  {p.get('doc_id')}#{p.get('chunk_index')}  "
              f"(source {p.get('source_updated_at')}, embedded {p.get('embedded_at')})\n"
              f"       {text[:160]}")
    for shard in result.skipped_shards:
        reason = result.problems.get(shard, "busy (a sync holds it)")
        print(f"warning: shard {shard} was not searched: {reason}", file=sys.stderr)
    return 1 if result.skipped_shards else 0


def cmd_verify(args: argparse.Namespace, rt: Runtime) -> int:
    from freshness.integrity.verify import verify

    checks = verify(rt, args.shard or None, deep=args.deep)
    print(json.dumps([c.as_dict() for c in checks], indent=2, default=str))
    return 0 if all(c.ok for c in checks) else 1


def cmd_demo_corpus(args: argparse.Namespace, _rt: Runtime | None) -> int:
    from freshness.demo import corpus as demo_corpus

    if args.mutate:
        print("\n".join(demo_corpus.mutate(args.target, args.mutate, args.seed)))
    else:
        print(f"wrote {demo_corpus.write_corpus(args.target, args.seed or 7)} docs")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="freshness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("sync", "detect, embed what changed, write Qdrant and state"),
                           ("detect", "record pending changes per shard (no embedding)"),
                           ("status", "per-shard freshness table"),
                           ("search", "semantic search over the served index"),
                           ("verify", "reconcile index, manifests and source")):
        p = sub.add_parser(name, help=helptext)
        add_common_options(p)
        p.add_argument("--shard", action="append", help="limit to this shard (repeatable)")
    sub.choices["sync"].add_argument(
        "--steps", help="replay source: FIRST:LAST[:STEP] commits, synced step by step")
    sub.choices["search"].add_argument("query")
    sub.choices["search"].add_argument("--limit", type=int, default=5)
    sub.choices["verify"].add_argument("--deep", action="store_true",
                                       help="re-chunk the source and compare every chunk")
    for module in _extra_commands().values():
        module.add_parser(sub)
    cli_histogram.add_parser(sub)
    demo = sub.add_parser("demo-corpus", help="write (or --mutate) the synthetic demo corpus")
    demo.add_argument("target")
    demo.add_argument("--mutate", type=int, default=0, help="edit N docs instead of writing")
    demo.add_argument("--seed", type=int)
    return parser


def _extra_commands() -> dict:
    """Commands that live in their own modules (name -> module with add_parser/run)."""
    from freshness.cli import export_history as cli_export_history
    from freshness.cli import repair as cli_repair
    from freshness.cli import simulate as cli_simulate

    return {"simulate": cli_simulate, "repair": cli_repair,
            "export-history": cli_export_history}


COMMANDS = {"sync": cmd_sync, "detect": cmd_detect, "status": cmd_status, "search": cmd_search,
            "verify": cmd_verify, "demo-corpus": cmd_demo_corpus,
            "histogram": cli_histogram.run}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        extra = _extra_commands()
        if args.command in extra:
            return extra[args.command].run(args, None)
        rt = None if args.command == "demo-corpus" else Runtime(settings_from_args(args))
        return COMMANDS[args.command](args, rt)
    except FreshnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
