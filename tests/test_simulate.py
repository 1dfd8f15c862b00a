"""Simulator: a hand-computable case, budgets respected, and the adaptive policy's edge."""

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freshness.policy.planner import CostModel
from freshness.policy.simulator import ChangeLog, calibrate, evaluate, simulate
from freshness.util.timeutil import DAY_S
from tests.conftest import SHARED_DATA

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
TS = pa.timestamp("us", "UTC")


def tables(snapshot: list[tuple[str, str]], changes: list[tuple[float, str, str, str]]):
    snap = pa.table({"path": [p for p, _ in snapshot], "shard": [s for _, s in snapshot],
                     "committed_at": pa.array([T0] * len(snapshot), TS)})
    log = pa.table({
        "committed_at": pa.array([T0 + timedelta(days=d) for d, *_ in changes], TS),
        "path": [p for _, p, _, _ in changes], "shard": [s for _, _, s, _ in changes],
        "op": [o for *_, o in changes]})
    return snap, log


def test_hand_computed_uniform_case():
    snap, changes = tables([("a", "s")], [(0.0, "b", "s", "add"), (1.0, "a", "s", "modify"),
                                          (3.0, "a", "s", "modify")])
    log = ChangeLog.from_tables(snap, changes)
    result = simulate(log, "uniform", 2.0, CostModel(10, 0, 1, 0))
    # doc a: stale from day 1 to the tick at day 2; doc b: added at 0, embedded at day 2.
    # doc-time 6 days, stale 1 + 2 = 3 days, so freshness 0.5; two docs, one run.
    assert result.runs == 1 and result.gpu_seconds == 10
    assert result.freshness == pytest.approx(0.5)
    assert result.mean_age_hours == pytest.approx((0.5 + 2.0) / 6 * 24)


def synthetic_log(seed: int = 0) -> ChangeLog:
    """A hot shard (popular, busy) and a cold one (rarely read, rarely changed)."""
    rng = np.random.default_rng(seed)
    snapshot = [(f"hot/{i}", "hot") for i in range(50)] + [(f"cold/{i}", "cold")
                                                         for i in range(200)]
    times = np.sort(rng.uniform(0, 120, 400))
    changes = [(float(t), f"hot/{rng.integers(50)}", "hot", "modify") if rng.random() < 0.7
               else (float(t), f"cold/{rng.integers(200)}", "cold", "modify") for t in times]
    snap, log = tables(snapshot, changes)
    popularity = {p: (10.0 if s == "hot" else 0.1) for p, s in snapshot}
    return ChangeLog.from_tables(snap, log, popularity=popularity)


def test_immediate_is_the_ceiling_and_budgets_are_respected():
    log, costs = synthetic_log(), CostModel(10, 0.01, 1)
    ceiling = simulate(log, "immediate", 0, costs)
    assert ceiling.freshness == pytest.approx(1.0) and ceiling.retrieval_weighted_freshness \
        == pytest.approx(1.0)
    for policy in ("adaptive", "adaptive-hindsight", "uniform", "threshold", "proportional",
                   "uniform-paced", "threshold-paced", "oracle"):
        result = calibrate(log, policy, 5.0, costs, iterations=12)
        assert result.gpu_seconds_per_day <= 5.0, policy
        assert result.retrieval_weighted_freshness < 1.0


def test_the_oracle_bounds_every_policy_at_equal_spend():
    log, costs = synthetic_log(1), CostModel(10, 0.01, 1)
    for budget in (2.0, 8.0):
        oracle = calibrate(log, "oracle", budget, costs)
        assert oracle.lower_bound_stale <= oracle.stale_share
        for policy in ("adaptive", "uniform", "proportional", "threshold"):
            other = calibrate(log, policy, budget, costs, iterations=12)
            assert oracle.stale_share <= other.stale_share + 1e-12, (budget, policy)
            assert oracle.lower_bound_stale <= other.stale_share, (budget, policy)


def test_the_loop_accounts_spend_as_the_evaluator_does():
    """The causal loop's own cost accounting (its credit) matches the scored schedule."""
    log, costs = synthetic_log(2), CostModel(10, 0.01, 1, 0.5)
    result = simulate(log, "adaptive", 3.0, costs, 3.0)
    assert 0 < result.gpu_seconds_per_day <= 3.0
    rescored = evaluate(log, result.run_times, result.run_shards, costs)
    assert rescored.gpu_seconds == pytest.approx(result.gpu_seconds)
    assert rescored.stale_share == pytest.approx(result.stale_share)


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="tldr replay data not present")
def test_tldr_replay_runs_and_immediate_is_perfect():
    log = ChangeLog.from_parquet(str(SHARED_DATA / "snapshot.parquet"),
                                 str(SHARED_DATA / "replay.parquet"))
    assert len(log.shard_names) == 12 and len(log.times) == 16584
    assert simulate(log, "immediate", 0, CostModel()).retrieval_weighted_freshness == 1.0


PACED = ("adaptive", "uniform-paced", "threshold-paced")  # the budget as given, no hindsight


@pytest.mark.parametrize("seed", [0, 3, 4])
def test_paced_policies_never_run_ahead_of_the_budget(seed):
    """At every run, what the schedule has spent so far is within the budget accrued so far."""
    log, costs, budget = synthetic_log(seed), CostModel(10, 0.01, 1, 0.5), 2.5
    for policy in PACED:
        result = simulate(log, policy, budget, costs, budget)
        assert result.runs >= 3, policy
        for k in range(1, result.runs + 1):
            so_far = evaluate(log, result.run_times[:k], result.run_shards[:k], costs)
            accrued = budget * result.run_times[k - 1] / 86400
            assert so_far.gpu_seconds <= accrued + 1e-6, (policy, k)


@pytest.mark.parametrize("seed", [0, 5])
def test_paced_policies_are_causal(seed):
    """Cutting the log's future off does not change any run before the cut."""
    rng = np.random.default_rng(seed)
    snapshot = [(f"s{i % 3}/{i}", f"s{i % 3}") for i in range(60)]
    days = np.sort(rng.uniform(0, 200, 300))
    changes = [(float(d), *snapshot[int(rng.integers(60))], "modify") for d in days]
    costs, budget, cut = CostModel(10, 0.01, 1, 0.5), 3.0, 120.0
    full = ChangeLog.from_tables(*tables(snapshot, changes), seed=seed)
    early = ChangeLog.from_tables(*tables(snapshot, [c for c in changes if c[0] <= cut]),
                                  seed=seed)
    for policy in PACED:
        a = simulate(full, policy, budget, costs, budget)
        b = simulate(early, policy, budget, costs, budget)
        before = a.run_times[a.run_times <= early.horizon]  # the cut log ends at its last change
        assert len(before) >= 3, policy
        np.testing.assert_array_equal(before, b.run_times[:len(before)], err_msg=policy)


def test_the_sweep_gives_the_same_cells_with_parallel_jobs(tmp_path):
    """`freshness simulate --corpus ... --jobs N` writes what one process writes."""
    import pyarrow.parquet as pq

    from freshness.policy import sweep

    rng = np.random.default_rng(3)
    docs = [(f"{s}/d{i}.md", s) for s in "abc" for i in range(6)]
    changes = sorted((float(d), *docs[k], "modify") for d, k in
                     zip(rng.uniform(0, 300, 80), rng.integers(0, len(docs), 80)))
    snapshot, replay = tables(docs, changes)
    pq.write_table(snapshot, tmp_path / "snapshot.parquet")
    pq.write_table(replay, tmp_path / "replay.parquet")

    def cells(jobs: int) -> dict:
        result = sweep.run([sweep.Corpus("tiny", tmp_path)], [5.0, 20.0], [0, 1], [1.0],
                           CostModel(), progress=lambda _: None, jobs=jobs)
        for row in result["cells"]:
            for policy in sweep.POLICIES:
                row[policy].pop("seconds")
        return result

    one, two = cells(1), cells(2)
    assert one == two and len(one["cells"]) == 4
    assert [(c["seed"], c["budget_percent"]) for c in two["cells"]] == \
        [(0, 5.0), (0, 20.0), (1, 5.0), (1, 20.0)]


def test_the_simulate_command_sweeps_the_reversed_variant_into_its_own_block(tmp_path, capsys):
    """`freshness simulate --corpus ... --reverse-activity --embed DOC --marker hostile` writes
    the reversed corpora's table between its own markers and leaves the rest of DOC alone."""
    import pyarrow.parquet as pq

    from freshness.cli.main import main
    from freshness.policy import sweep

    rng = np.random.default_rng(4)
    docs = [(f"{s}/d{i}.md", s) for s in "ab" for i in range(5)]
    changes = sorted((float(d), *docs[k], "modify") for d, k in
                     zip(rng.exponential(1, 60).cumsum() ** 2 / 20, rng.integers(0, 10, 60)))
    snapshot, replay = tables(docs, changes)
    pq.write_table(snapshot, tmp_path / "snapshot.parquet")
    pq.write_table(replay, tmp_path / "replay.parquet")
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- sweep:begin -->\nmain table\n<!-- sweep:end -->\n"
                   "<!-- hostile:begin -->\nold\n<!-- hostile:end -->\ntail\n")
    assert main(["simulate", "--corpus", f"tiny={tmp_path}", "--reverse-activity",
                 "--budgets", "20", "--seeds", "0", "--zipfs", "1", "--out",
                 str(tmp_path / "out"), "--embed", str(doc), "--marker", "hostile"]) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert {c["corpus"] for c in result["cells"]} == {"tiny reversed"}
    text = doc.read_text()
    assert "main table" in text and text.endswith("<!-- hostile:end -->\ntail\n")
    assert text.split("<!-- hostile:begin -->\n")[1].split("<!-- hostile:end -->")[0] == \
        sweep.render(result)
    capsys.readouterr()


def test_a_shard_added_later_gets_its_first_build_when_the_credit_covers_it():
    """As for the sensor (manifest version 0): a new shard jumps the threshold, not the budget."""
    from freshness.policy.control import LoopConfig
    from freshness.policy.simulator import adaptive

    snap, changes = tables([("a/1", "a"), ("a/2", "a")],
                           [(2.0, "a/1", "a", "modify"), (10.0, "b/1", "b", "add"),
                            (10.5, "b/2", "b", "add"), (40.0, "a/2", "a", "modify")])
    log = ChangeLog.from_tables(snap, changes)
    costs = CostModel(10, 0, 1, 0)  # 10 s a run
    never_by_rate = 1e12  # K so high that only first builds run
    times, shards = adaptive(log, LoopConfig(5.0, costs, fixed_threshold=never_by_rate))
    assert times.tolist() == [10 * DAY_S] and [log.shard_names[s] for s in shards[0]] == \
        ["a", "b"]  # the new shard's first build; the pending edit of a rides along
    times, _ = adaptive(log, LoopConfig(0.5, costs))  # 10 s of credit by day 20
    first = times[0] / DAY_S
    assert first == pytest.approx(20.0)  # waited for the credit, then built at once


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reversing_the_activity_keeps_the_changes_and_reverses_the_gaps(seed):
    """The hostile variant: the same changes in the same order, the gaps between commit
    instants in reverse order, the same horizon; reversing twice gives the log back."""
    log = synthetic_log(seed)
    reversed_log = log.with_activity_reversed()
    instants, moved = np.unique(log.times), np.unique(reversed_log.times)
    np.testing.assert_allclose(np.diff(moved), np.diff(instants)[::-1])
    assert np.all(np.diff(reversed_log.times) >= 0)  # still in replay order
    np.testing.assert_array_equal(reversed_log.docs, log.docs)
    np.testing.assert_array_equal(reversed_log.deletes, log.deletes)
    assert reversed_log.horizon == pytest.approx(log.horizon)
    np.testing.assert_allclose(reversed_log.with_activity_reversed().times, log.times)
    # commits that shared an instant still share one
    same = np.diff(log.times) == 0
    np.testing.assert_array_equal(np.diff(reversed_log.times) == 0, same)


@pytest.mark.parametrize("seed", [0, 3])
def test_paced_policies_stay_within_the_budget_when_activity_ramps_down(seed):
    """On the reversed log too, no paced schedule ever runs ahead of the budget accrued."""
    log, costs, budget = synthetic_log(seed).with_activity_reversed(), \
        CostModel(10, 0.01, 1, 0.5), 2.5
    for policy in PACED:
        result = simulate(log, policy, budget, costs, budget)
        assert result.runs >= 3, policy
        for k in range(1, result.runs + 1):
            so_far = evaluate(log, result.run_times[:k], result.run_shards[:k], costs)
            assert so_far.gpu_seconds <= budget * result.run_times[k - 1] / DAY_S + 1e-6


def test_the_sweep_reports_the_oracle_at_each_loops_own_spend():
    """Spending less than the budget, a loop is compared with the oracle at its own spend
    too: that oracle serves no fewer stale retrievals than the oracle at the whole budget
    and no more than the loop."""
    from freshness.policy import sweep

    log = synthetic_log(1)
    for percent in (5.0, 20.0):
        row = sweep.cell(log, percent, CostModel(10, 0.01, 1))
        for policy in sweep.ADAPTIVE:
            assert row[policy]["spend"] <= 1.0
            assert row["oracle"]["stale"] - 1e-7 <= row[policy]["oracle_at_spend"] \
                <= row[policy]["stale"] + 1e-7, (percent, policy)


def test_a_shard_removed_whole_is_retired_at_once_for_every_schedule():
    """As the sensor does (a `retire-` run, outside the budget): once a shard's last doc goes,
    its deletions are no longer served, whatever the schedule; if it comes back it is a new
    shard (its first build jumps the threshold). A source emptied whole retires nothing."""
    from freshness.policy.control import LoopConfig
    from freshness.policy.simulator import adaptive

    snap, changes = tables([("a/1", "a"), ("b/1", "b"), ("b/2", "b")],
                           [(1.0, "a/1", "a", "modify"), (5.0, "b/1", "b", "delete"),
                            (5.0, "b/2", "b", "delete"), (20.0, "a/1", "a", "modify")])
    log = ChangeLog.from_tables(snap, changes)
    assert log.vanishings()[0].tolist() == [5 * DAY_S]
    costs = CostModel(10, 0, 1, 0)
    result = evaluate(log, np.array([10 * DAY_S]), [np.array([0, 1])], costs)
    # a: stale days 1-10; b/1, b/2: exist days 0-5, retired at 5 (not stale, gone after)
    assert result.freshness == pytest.approx(1 - 9 / (20 + 5 + 5))
    assert result.runs == 1 and result.gpu_seconds == 10  # the retirement costs nothing
    never_by_rate = 1e12  # only first builds run
    back = ChangeLog.from_tables(*tables(
        [("a/1", "a"), ("b/1", "b")],
        [(5.0, "b/1", "b", "delete"), (12.0, "b/3", "b", "add"), (30.0, "a/1", "a", "modify")]))
    times, shards = adaptive(back, LoopConfig(5.0, costs, fixed_threshold=never_by_rate))
    assert times.tolist() == [12 * DAY_S] and [back.shard_names[s] for s in shards[0]] == ["b"]
    emptied = ChangeLog.from_tables(*tables([("b/1", "b")], [(5.0, "b/1", "b", "delete"),
                                                             (9.0, "b/1", "b", "add")]))
    assert len(emptied.vanishings()[0]) == 0


@st.composite
def shrinking_logs(draw):
    """Small logs over three shards whose docs come and go (shards emptied and refilled, ties
    between change instants), each op consistent with the state before it."""
    paths = [f"{s}/{i}" for s in "abc" for i in range(3)]
    alive = {p for p in paths if draw(st.booleans())} or {paths[0]}
    snapshot = [(p, p[0]) for p in sorted(alive)]
    changes, day = [], 0.0
    for _ in range(draw(st.integers(1, 25))):
        day += draw(st.sampled_from([0.0, 0.5, 1.0, 3.0]))
        p = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["modify", "delete"])) if p in alive else "add"
        alive.symmetric_difference_update({p} if op != "modify" else set())
        changes.append((day + 0.1, p, p[0], op))
    return ChangeLog.from_tables(*tables(snapshot, changes))


@given(shrinking_logs(), st.lists(st.tuples(st.floats(0, 80), st.sets(st.integers(0, 2),
                                                                        min_size=1)),
                                  max_size=6))
@settings(max_examples=80, deadline=None)
def test_retiring_a_shard_is_a_free_run_of_it_when_its_last_doc_goes(log, schedule):
    """Invariants on random logs and schedules: a retirement happens exactly when a shard's
    last doc goes while the source keeps some; any schedule scores as if it also ran that shard
    at that instant, for free; and the loop's own spend accounting matches the evaluator's."""
    n = len(log.shard_names)
    alive = np.zeros(len(log.popularity), bool)
    alive[log.initial_docs] = True
    expected = []
    for t in np.unique(log.times):
        before = np.bincount(log.doc_shard[alive], minlength=n)
        for c in np.flatnonzero(log.times == t):
            alive[log.docs[c]] = not log.deletes[c]
        after = np.bincount(log.doc_shard[alive], minlength=n)
        expected += [(t, s) for s in range(n) if before[s] and not after[s] and after.sum()]
    gone_t, gone_s = log.vanishings()
    assert list(zip(gone_t.tolist(), gone_s.tolist())) == expected
    costs = CostModel(10, 0.01, 1, 0.5)
    times = np.array([t * DAY_S for t, _ in schedule])
    order = np.argsort(times, kind="stable")
    shards = [np.array(sorted({x % n for x in schedule[i][1]})) for i in order]
    plain = evaluate(log, times[order], shards, costs)
    explicit_t = np.concatenate([times[order], gone_t])
    explicit = sorted(zip(explicit_t.tolist(), range(len(explicit_t))))
    both = [shards[i] if i < len(shards) else np.array([gone_s[i - len(shards)]])
            for _, i in explicit]
    with_runs = evaluate(log, np.array([t for t, _ in explicit]), both, costs)
    assert with_runs.stale_share == pytest.approx(plain.stale_share, abs=1e-12)
    assert with_runs.freshness == pytest.approx(plain.freshness, abs=1e-12)
    assert with_runs.gpu_seconds >= plain.gpu_seconds
    loop = simulate(log, "adaptive", 4.0, costs, 4.0)
    rescored = evaluate(log, loop.run_times, loop.run_shards, costs)
    assert rescored.gpu_seconds == pytest.approx(loop.gpu_seconds)
    assert loop.gpu_seconds_per_day <= 4.0 + 1e-9


@given(shrinking_logs(), st.floats(0.5, 20), st.floats(1e-3, 1e3))
@settings(max_examples=40, deadline=None)
def test_the_oracle_is_optimal_and_its_bound_holds_when_shards_vanish(log, budget, price):
    """Against every batched schedule (brute force over the subsets of change instants), with
    shards retired for free: the oracle's schedule minimises stale mass + price × GPU seconds
    and its objective is what the evaluator scores; its Lagrangian bound holds within the
    budget."""
    from itertools import combinations

    from freshness.policy.oracle import _oracle_schedule, oracle

    times, _ = log.events()
    costs = CostModel(10, 0.01, 1, 0)
    every = np.arange(len(log.shard_names))
    chosen, objective = _oracle_schedule(log, costs, price)
    mine = evaluate(log, times[chosen], [every] * len(chosen), costs)
    assert mine.stale_mass + price * mine.gpu_seconds == pytest.approx(objective, rel=1e-9,
                                                                      abs=1e-9)
    bound = oracle(log, budget, costs).lower_bound_stale
    for k in range(min(len(times), 8) + 1):
        for subset in combinations(times[:8].tolist(), k):
            result = evaluate(log, np.array(subset), [every] * k, costs)
            assert result.stale_mass + price * result.gpu_seconds >= objective * (1 - 1e-9)
            if result.gpu_seconds_per_day <= budget:
                assert bound <= result.stale_share + 1e-12, (subset, bound, result)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.001, 400.0, allow_nan=False), min_size=1, max_size=25,
                unique=True))
def test_a_run_decided_at_a_change_instant_embeds_that_change(days):
    """With credit for a run at every change, the loop runs at each change instant and serves
    nothing stale: the evaluator counts the change the run was decided at as embedded (the
    replay's clock in days once put a run an ulp before that instant, for ~6 % of instants)."""
    snapshot = [(f"a/{i}", "a") for i in range(3)]
    changes = [(d, f"a/{i % 3}", "a", "modify") for i, d in enumerate(sorted(days))]
    log = ChangeLog.from_tables(*tables(snapshot, changes))
    costs = CostModel(10, 0, 1, 0)
    for policy, knob in (("uniform-paced", 1e12), ("adaptive-fixed", 0.0), ("foresight", 0.0)):
        result = simulate(log, policy, knob, costs, 1e12)
        assert result.runs == len(np.unique(log.times)), policy
        assert result.stale_share == 0.0, policy


def test_foresight_runs_at_a_change_when_the_gap_to_the_next_is_worth_it():
    """`foresight` knows when the next change lands: a run at a change instant iff the pending
    stale rate × the time to the next change reaches K; after the last change, at once."""
    snap, changes = tables([("a", "s"), ("b", "s")], [(1.0, "a", "s", "modify"),
                                                      (5.0, "b", "s", "modify")])
    log = ChangeLog.from_tables(snap, changes, popularity={"a": 1.0, "b": 1.0})
    costs = CostModel(10, 0, 1, 0)
    # a (share 1/2) pending from day 1, the next change 4 days later: 2 share-days of waiting
    assert (simulate(log, "foresight", 1.9, costs).run_times / DAY_S).tolist() == [1.0, 5.0]
    assert (simulate(log, "foresight", 2.1, costs).run_times / DAY_S).tolist() == [5.0]
    log, costs = synthetic_log(3), CostModel(10, 0.01, 1)
    for budget in (0.5, 2.0):  # and no schedule at its spend beats the oracle's
        result = calibrate(log, "foresight", budget, costs)
        oracle = simulate(log, "oracle", result.gpu_seconds_per_day, costs, budget)
        assert oracle.stale_share <= result.stale_share + 1e-12
