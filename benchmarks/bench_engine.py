"""Benchmark of the compensation plan engine in memory (issue 4).

    python benchmarks/bench_engine.py                  # 1,000,000 registrations + 100,000 retopups
    python benchmarks/bench_engine.py --registrations 200000   # quicker

Phases (all on one core, `time.perf_counter`, state in flat lists):

1. *Main run*: 1,000,000 registrations (random sponsors among registered participants, each
   leased and confirmed at once) plus one retopup after every 10th registration (100,000, random
   payers), through `FastMemoryPool` — the reference step functions with their arithmetic
   inlined; `tests/plan/test_fast_path.py` proves it leaves exactly the reference path's state
   after every event. Reports throughput and checks conservation (liabilities == inflows).
2. *Flat cost*: pools at 10k, 100k and 1M nodes (the same event sequence, stopped early) take
   turns running chunks of the next events, so the three sizes are measured under the same
   machine conditions; the per-event time is the median over chunks. Reports the 1M/10k ratio
   (target <= 1.3).
3. *Baselines in the same run*: the reference path (`MemoryPool`: views, `engine.place`, reward
   line tuples) on the first registrations, and a trivial Python loop, both as ratios.
4. *Auto-progression*: the same workload under plan v1 with reserve_slots 13, where completions
   cascade into higher levels.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.plan.config import PlanConfig, load_plan
from backend.plan.fast import FastMemoryPool
from backend.plan.memory import MemoryPool

RETOPUP_EVERY = 10


class Workload:
    """A pre-generated event sequence, so the timed loops only run the engine.

    Registration i (0-based) is sponsored by a uniformly random participant among the company
    and the i earlier registrants; after every 10th registration a random registrant retops up.
    Events are ints as `MemoryPool.replay` takes them: a sponsor id, or ~payer for a retopup.
    """

    def __init__(self, registrations: int, seed: int) -> None:
        rng = random.Random(seed)
        events: list[int] = []
        for i in range(registrations):
            events.append(int(rng.random() * (i + 1)))
            if i % RETOPUP_EVERY == RETOPUP_EVERY - 1:
                events.append(~(1 + int(rng.random() * (i + 1))))
        self.events = events

    @staticmethod
    def position(registration: int) -> int:
        """Index in `events` of registration ``registration``."""
        return registration + registration // RETOPUP_EVERY

    def run(self, pool: MemoryPool, start: int, stop: int) -> int:
        """Run registrations [start, stop) and their retopups; returns the events run."""
        return pool.replay(self.events, self.position(start), self.position(stop))


def check(pool: MemoryPool) -> None:
    if pool.liabilities() != pool.inflow:
        raise SystemExit(f"conservation broken: {pool.liabilities()} != {pool.inflow}")


class Clock:
    """Wall time (`time.perf_counter`) and this process's CPU time (`time.process_time`).

    On a shared machine wall time also counts the time other processes held the core; CPU
    time is what one core spent on the engine. Both are reported.
    """

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def main_run(
    plan: PlanConfig, work: Workload, n: int, label: str
) -> tuple[MemoryPool, float, float, int]:
    """Run n registrations (+ retopups) with progress; returns (pool, wall, cpu, events)."""
    pool = FastMemoryPool(plan)
    step = max(n // 10, 1)
    wall = cpu = 0.0
    events = 0
    for start in range(0, n, step):
        stop = min(start + step, n)
        clock = Clock()
        events += work.run(pool, start, stop)
        dw, dc = clock.lap()
        wall += dw
        cpu += dc
        print(
            f"  [{label}] {stop:>9,} registrations {events:>9,} events: this chunk "
            f"{(stop - start) / dc:>9,.0f} placements/s CPU, {(stop - start) / dw:>9,.0f} wall; "
            f"total {wall:5.1f} s wall",
            flush=True,
        )
    check(pool)
    return pool, wall, cpu, events


def flat_cost(
    plan: PlanConfig, work: Workload, sizes: list[int], chunk: int, rounds: int
) -> dict[int, tuple[float, float, float]]:
    """Per-event time at each tree size: pools of each size take turns running the next
    ``chunk`` registrations (+ retopups); returns size -> (median CPU, min CPU, median wall)."""
    pools: dict[int, MemoryPool] = {}
    for size in sizes:
        print(f"  building a pool of {size:,} nodes ...", flush=True)
        pool = FastMemoryPool(plan)
        work.run(pool, 0, size - 1)  # + the company's root = size nodes at level 1
        pools[size] = pool
    cpu: dict[int, list[float]] = {size: [] for size in sizes}
    wall: dict[int, list[float]] = {size: [] for size in sizes}
    position = {size: size - 1 for size in sizes}
    for r in range(rounds):
        for size in sizes:
            start = position[size]
            clock = Clock()
            events = work.run(pools[size], start, start + chunk)
            dw, dc = clock.lap()
            cpu[size].append(dc / events)
            wall[size].append(dw / events)
            position[size] = start + chunk
        if (r + 1) % 5 == 0 or r + 1 == rounds:
            print(f"  round {r + 1}/{rounds}", flush=True)
    for built in pools.values():
        check(built)
    return {
        size: (statistics.median(cpu[size]), min(cpu[size]), statistics.median(wall[size]))
        for size in sizes
    }


def trivial_loop(n: int) -> tuple[float, float]:
    """Per-iteration (wall, CPU) time of a loop doing one list index, one add and one call."""
    acc = [0] * 1024
    f: Callable[[int], int] = abs
    clock = Clock()
    for i in range(n):
        acc[i & 1023] += f(i)
    dw, dc = clock.lap()
    return dw / n, dc / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registrations", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000, help="reference-path events")
    parser.add_argument("--progression", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    n = args.registrations
    sizes = [s for s in (10_000, 100_000, 1_000_000) if s <= n]
    retopups = n // RETOPUP_EVERY

    plan = load_plan()
    print(f"Python {platform.python_version()} on {platform.machine()}, plan v{plan.version}")
    print(f"plan hash {plan.plan_hash_hex()}; {load()}")
    print(f"generating the workload ({n:,} registrations + {retopups:,} retopups) ...")
    work = Workload(max(n, sizes[-1]) + args.chunk * args.rounds + 1, args.seed)
    gc.collect()

    print("1. main run (fast path)")
    pool, wall, cpu, events = main_run(plan, work, n, "v1")
    print(
        f"  {n:,} registrations + {retopups:,} retopups: {wall:.2f} s wall, {cpu:.2f} s CPU; "
        f"{pool.completions:,} completions; conservation ok"
    )
    del pool
    gc.collect()

    print("2. flat cost (pools of each size take turns)")
    per_event = flat_cost(plan, work, sizes, args.chunk, args.rounds)
    gc.collect()

    print("3. baselines")
    m = min(args.reference, n)
    ref = MemoryPool(plan)
    clock = Clock()
    ref_events = work.run(ref, 0, m)
    ref_wall, ref_cpu = (x / ref_events for x in clock.lap())
    check(ref)
    fast = FastMemoryPool(plan)
    clock = Clock()
    fast_events = work.run(fast, 0, m)
    fast_wall, fast_cpu = (x / fast_events for x in clock.lap())
    if (fast.pending, fast.held, fast.levels[1].reserved) != (
        ref.pending,
        ref.held,
        ref.levels[1].reserved,
    ):
        raise SystemExit("fast path and reference path disagree")
    del ref, fast
    loop_wall, loop_cpu = trivial_loop(3_000_000)

    p_n = min(args.progression, n)
    print(f"4. auto-progression plan (v1 with reserve_slots 13), {p_n:,} registrations")
    progression_plan = PlanConfig.model_validate({**plan.model_dump(), "reserve_slots": 13})
    p_pool, p_wall, p_cpu, p_events = main_run(progression_plan, work, p_n, "progression")
    top = max(level for level, tree in enumerate(p_pool.levels) if tree.count > 1)

    base_cpu = per_event[sizes[0]][0]
    base_min = per_event[sizes[0]][1]
    print()
    print(f"Results ({load()})")
    print()
    print("| measurement | CPU per event | events/s (CPU) | wall per event | ratio |")
    print("|---|---|---|---|---|")
    print(
        f"| main run: {n:,} registrations + {retopups:,} retopups ({events:,} events) "
        f"| {us(cpu / events)} | {events / cpu:,.0f} | {us(wall / events)} | — |"
    )
    print(
        f"| main run, placements/s: {n:,} placements in the time of all {events:,} events "
        f"| — | **{n / cpu:,.0f}** (wall {n / wall:,.0f}) | — | target ≥ 100,000 |"
    )
    for size in sizes:
        med, low, wmed = per_event[size]
        print(
            f"| at {size:,} nodes: median (min) of {args.rounds} chunks of {args.chunk:,} "
            f"registrations + retopups | {us(med)} ({us(low)}) | {1 / med:,.0f} | {us(wmed)} "
            f"| {med / base_cpu:.3f} ({low / base_min:.3f}) × the 10k figure |"
        )
    print(
        f"| reference path (views, engine.register/place/retopup, line tuples), first "
        f"{m:,} registrations + retopups | {us(ref_cpu)} | {1 / ref_cpu:,.0f} | {us(ref_wall)} "
        f"| {ref_cpu / fast_cpu:.2f} × the fast path |"
    )
    print(
        f"| fast path (`FastMemoryPool.replay`), same events | {us(fast_cpu)} "
        f"| {1 / fast_cpu:,.0f} | {us(fast_wall)} | 1 |"
    )
    print(
        f"| trivial loop iteration (list index + add + call) | {us(loop_cpu)} "
        f"| {1 / loop_cpu:,.0f} | {us(loop_wall)} | fast path = {fast_cpu / loop_cpu:.0f} × |"
    )
    print(
        f"| auto-progression plan: {p_n:,} registrations + retopups, {p_pool.placements:,} "
        f"placements ({p_pool.progressions:,} auto-progressions, up to level {top}) "
        f"| {us(p_cpu / p_events)} | {p_pool.placements / p_cpu:,.0f} placements/s "
        f"| {us(p_wall / p_events)} | wall {p_pool.placements / p_wall:,.0f} placements/s |"
    )
    ratio = per_event[sizes[-1]][0] / base_cpu
    ratio_min = per_event[sizes[-1]][1] / base_min
    print()
    print(
        f"flat cost: CPU per event at {sizes[-1]:,} nodes / at {sizes[0]:,} nodes = "
        f"{ratio:.3f} by medians, {ratio_min:.3f} by minima "
        f"({'within' if max(ratio, ratio_min) <= 1.3 else 'ABOVE'} the 1.3 target)"
    )
    rate = n / cpu
    print(
        f"throughput: {rate:,.0f} placements/s of CPU on one core "
        f"({'meets' if rate >= 100_000 else 'BELOW'} the 100,000/s target); "
        f"wall {n / wall:,.0f}/s"
    )


if __name__ == "__main__":
    main()
