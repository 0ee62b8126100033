"""Memory and state: RSS and recovery snapshot bytes per active SKU-store key, and snapshot time.

For each key count (10k, 100k, 1M) a fresh child process builds ``keys / 1000`` stores of 1,000
items each by driving :meth:`operators.store.StoreState.on_events` with synthetic events over
three days of event time, in batches of 500 as the dataflow would: every item has master data
(ItemParams), a morning SNAPSHOT each day, sales at a long-tailed rate (median ~1.5 lines/day),
some receipts; 3% of items sell out (OUT_OF_STOCK stays open) and 2% get a burst of sales on the
last afternoon (DEMAND_SPIKE open). The child measures:

- RSS delta (``/proc/self/statm`` resident, after ``gc.collect()``) of the built states, per key;
- snapshot bytes per key: ``len(pickle.dumps((state, {})))`` per store, what Bytewax stores;
- seconds to pickle every store once (a full snapshot: each store whose state changed in an
  epoch is pickled whole at the epoch's end) and to unpickle them (a recovery);
- RSS per key of the restored (unpickled) states, and where the bytes go (items, dedup ids, ...).

Writes ``bench/results/memory.md`` and ``bench/results/memory.png``.

    python -m bench.memory [--keys 10000,100000,1000000] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._util import RESULTS, compiled_install, say, table, write_result

ITEMS_PER_STORE = 1000
DAYS = 3
HOUR = 3_600_000
DAY = 24 * HOUR
START = 1_772_409_600_000  # 2026-03-02T00:00Z, a Monday
BATCH = 500
OPEN_H, CLOSE_H = 8, 22
CATEGORIES = [f"C{i:02d}" for i in range(1, 11)]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def store_events(store_id: str, rng: random.Random) -> tuple[list, list]:
    """(item params, events in arrival order) of one store."""
    from operators.events import InventoryEvent, ItemParams, Origin, Sale

    params, events = [], []
    n = 0

    def origin(source: str) -> Origin:
        return Origin(source, 0, n)

    for k in range(ITEMS_PER_STORE):
        sku = f"{CATEGORIES[k % len(CATEGORIES)]}-{k:06d}"
        price = round(rng.uniform(1, 12), 2)
        params.append(ItemParams(store_id, sku, price, round(price * 0.6, 2), 48.0, 0.95, 6, 4, 24,
                                 CATEGORIES[k % len(CATEGORIES)]))  # fmt: skip
        per_day = min(60.0, rng.lognormvariate(0.4, 1.2))  # sale lines a day: median 1.5, long tail
        stockout = rng.random() < 0.03
        spike = not stockout and rng.random() < 0.02
        on_hand = int(per_day * 1.4 * 6) + 8 if not stockout else max(2, int(per_day * 1.2))
        for day in range(DAYS):
            t0 = START + day * DAY + OPEN_H * HOUR
            n += 1
            events.append(InventoryEvent(f"{store_id}-i{n}", t0 - 600_000, store_id, sku, "SNAPSHOT", 0,
                                         on_hand, 0, origin("inventory")))  # fmt: skip
            if stockout:
                on_hand = 0 if day == DAYS - 1 else on_hand
            lines = max(1 if day == 0 else 0, _poisson(rng, per_day))
            for _ in range(lines):
                n += 1
                t = t0 + int(rng.random() * (CLOSE_H - OPEN_H) * HOUR)
                q = 1 if rng.random() < 0.8 else rng.randint(2, 4)
                events.append(Sale(f"{store_id}-s{n}", t, store_id, sku, "STORE", q, price, None, origin("sales")))
            if rng.random() < 0.15:
                n += 1
                t = t0 + int(rng.random() * 6 * HOUR)
                events.append(InventoryEvent(f"{store_id}-i{n}", t, store_id, sku, "RECEIPT", 12, None, None,
                                             origin("inventory")))  # fmt: skip
        if spike:  # a burst on the last afternoon
            t0 = START + (DAYS - 1) * DAY + 15 * HOUR
            for j in range(int(8 + per_day * 3)):
                n += 1
                events.append(Sale(f"{store_id}-s{n}", t0 + j * 120_000, store_id, sku, "STORE", 1, price, None,
                                   origin("sales")))  # fmt: skip
        if stockout:  # sell the last units of the last day's (empty) shelf
            n += 1
            t = START + (DAYS - 1) * DAY + 12 * HOUR
            events.append(Sale(f"{store_id}-s{n}", t, store_id, sku, "STORE", 1, price, None, origin("sales")))
    events.sort(key=lambda e: e.event_time)
    return params, events


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 30:
        return max(0, int(rng.gauss(lam, lam**0.5) + 0.5))
    k, p, limit = 0, 1.0, pow(2.718281828459045, -lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def build_store(store_id: str, seed: int):
    """A StoreState of ITEMS_PER_STORE items driven through DAYS of events, and what it emitted."""
    from operators.policy import Policy
    from operators.store import StoreState

    policy = Policy()
    rng = random.Random(seed)
    params, events = store_events(store_id, rng)
    state = StoreState(store_id)
    state.on_events(params, policy)
    alerts = 0
    for i in range(0, len(events), BATCH):
        alerts += len(state.on_events(events[i : i + BATCH], policy).alerts)
    return state, len(events) + len(params), alerts


def child(keys: int, drive_keys: int) -> dict:
    """Build ``keys`` keys in this (fresh) process and measure."""
    from operators.store import _open

    build_store("warm-up", seed=-1)  # imports and first-use allocations are not state
    gc.collect()
    base = rss_bytes()
    stores, n_events, n_alerts = [], 0, 0
    n_stores = max(1, keys // ITEMS_PER_STORE)
    n_driven = min(n_stores, max(1, drive_keys // ITEMS_PER_STORE))
    t0 = time.perf_counter()
    for s in range(n_driven):
        state, ne, na = build_store(f"S{s:05d}", seed=s)
        stores.append(state)
        n_events += ne
        n_alerts += na
    for s in range(n_driven, n_stores):  # copies of the driven stores: independent objects, as restored
        state = pickle.loads(pickle.dumps(stores[s % n_driven], protocol=pickle.HIGHEST_PROTOCOL))
        state.store_id = f"S{s:05d}"
        stores.append(state)
    build_s = time.perf_counter() - t0
    gc.collect()
    built = rss_bytes()
    n_keys = sum(len(s.items) for s in stores)
    open_keys = sum(1 for s in stores for it in s.items.values() if _open(it))

    t0 = time.perf_counter()
    blobs = [pickle.dumps((s, {}), protocol=pickle.HIGHEST_PROTOCOL) for s in stores]
    dump_s = time.perf_counter() - t0
    snap = sum(len(b) for b in blobs)
    one = stores[0]
    parts = {name: len(pickle.dumps(getattr(one, name), protocol=pickle.HIGHEST_PROTOCOL))
             for name in ("items", "params", "seen", "due", "buffer", "profile")}  # fmt: skip
    parts = {k: v / len(one.items) for k, v in parts.items()}
    path = os.path.join(tempfile.mkdtemp(prefix="bench-memory-"), "snapshots.pickle")
    with open(path, "wb") as f:
        pickle.dump(blobs, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {
        "keys": n_keys,
        "stores": len(blobs),
        "driven_stores": n_driven,
        "events": n_events,
        "alerts": n_alerts,
        "open_keys": open_keys,
        "build_s": build_s,
        "rss_per_key": (built - base) / n_keys,
        "path": path,
        "snapshot_per_key": snap / n_keys,
        "snapshot_bytes": snap,
        "store_snapshot_bytes": snap / len(blobs),
        "dump_s": dump_s,
        "parts_per_key": parts,
    }


def restore(path: str) -> dict:
    """In a fresh process: RSS of the states unpickled from their snapshots, and the time to unpickle."""
    import operators.store  # noqa: F401  (imports are not state)

    with open(path, "rb") as f:
        blobs = pickle.load(f)
    os.unlink(path)
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    restored = [pickle.loads(b) for b in blobs]
    load_s = time.perf_counter() - t0
    gc.collect()
    keys = sum(len(s.items) for s, _ in restored)
    return {"rss_restored_per_key": (rss_bytes() - before) / keys, "load_s": load_s}


def plot(rows: list[dict], path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib not installed (pip install matplotlib): no plot")
        return False
    keys = [r["keys"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(keys, [r["rss_per_key"] * r["keys"] / 2**20 for r in rows], "o-", label="RSS (built by on_events)")
    a.plot(keys, [r["rss_restored_per_key"] * r["keys"] / 2**20 for r in rows], "s--", label="RSS (restored)")
    a.plot(keys, [r["snapshot_bytes"] / 2**20 for r in rows], "^-", label="snapshot (pickled)")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("active SKU-store keys")
    a.set_ylabel("MiB")
    a.set_title("Total state size")
    a.grid(True, which="both", alpha=0.3)
    a.legend()
    b.plot(keys, [r["rss_per_key"] for r in rows], "o-", label="RSS (built)")
    b.plot(keys, [r["rss_restored_per_key"] for r in rows], "s--", label="RSS (restored)")
    b.plot(keys, [r["snapshot_per_key"] for r in rows], "^-", label="snapshot")
    b.axhline(2048, color="C0", ls=":", lw=1, label="RSS goal 2 KB")
    b.axhline(1024, color="C2", ls=":", lw=1, label="snapshot goal 1 KB")
    b.set_xscale("log")
    b.set_ylim(0, max(2300, max(r["rss_per_key"] for r in rows) * 1.15))
    b.set_xlabel("active SKU-store keys")
    b.set_ylabel("bytes per key")
    b.set_title("Per key (flat = linear growth)")
    b.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", default="10000,100000,1000000", help="comma-separated key counts")
    p.add_argument("--quick", action="store_true", help="10k and 100k keys, 10k driven (under a minute)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--restore", help=argparse.SUPPRESS)
    p.add_argument(
        "--drive-keys",
        type=int,
        default=100_000,
        help="keys built by driving on_events (~60 µs/event, ~13 events/key); stores beyond are "
        "pickle copies of the driven ones (100,000; give 1000000 to drive every key, ~15 min)",
    )
    p.add_argument("--snapshot-interval", type=float, default=30.0, help="epoch length to judge snapshot cost (30)")
    p.add_argument("--compiled", action="store_true", help="measure operators/ as pip installs it (mypyc)")
    args = p.parse_args(argv)
    if args.restore:
        print(json.dumps(restore(args.restore)), flush=True)
        return 0
    if args.child:
        print(json.dumps(child(args.child, args.drive_keys)), flush=True)
        return 0
    counts = [10_000, 100_000] if args.quick else [int(x) for x in args.keys.split(",")]
    if args.quick:
        args.drive_keys = 10_000
    env = compiled_install(Path(tempfile.mkdtemp(prefix="bench-compiled-"))) if args.compiled else None
    py = [sys.executable, "-P"] if args.compiled else [sys.executable]
    rows = []
    for n in counts:
        say(f"building {n:,} keys in a fresh process ...")
        cmd = [*py, "-m", "bench.memory", "--child", str(n), "--drive-keys", str(args.drive_keys)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        out = subprocess.run([*py, "-m", "bench.memory", "--restore", r.pop("path")], capture_output=True,
                             text=True, check=True, env=env)  # fmt: skip
        r |= json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        say(f"  {r['keys']:,} keys ({r['stores']} stores, {r['events']:,} events, {r['open_keys']:,} open, "
            f"built in {r['build_s']:.1f} s): RSS {r['rss_per_key']:.0f} B/key "
            f"(restored {r['rss_restored_per_key']:.0f}), snapshot {r['snapshot_per_key']:.0f} B/key, "
            f"full snapshot {r['dump_s']:.2f} s, restore {r['load_s']:.2f} s")  # fmt: skip
    build = "operators/ compiled by mypyc, as `pip install` builds it" if args.compiled else "pure Python (editable)"
    name = "memory_compiled" if args.compiled else "memory"
    report = f"Build: {build}.\n\n" + render(rows, args.snapshot_interval)
    if plot(rows, RESULTS / f"{name}.png"):
        report += f"\n\n![state size against key count]({name}.png)\n"
    print(report)
    say(f"wrote {write_result(name, 'Memory and state', report)}")
    return 0


def render(rows: list[dict], interval: float) -> str:
    big = rows[-1]
    rss_ok = all(r["rss_per_key"] <= 2048 for r in rows)
    snap_ok = all(r["snapshot_per_key"] <= 1024 for r in rows)
    lin = [r["rss_per_key"] for r in rows]
    slin = [r["snapshot_per_key"] for r in rows]
    body = [
        f"Synthetic stores of {ITEMS_PER_STORE:,} items driven through `StoreState.on_events` over {DAYS} days of "
        "event time in batches of 500 (item params, a daily SNAPSHOT, long-tailed sales, receipts; 3% of items sold "
        "out, 2% with a sales burst: their alerts stay open); each key count built in a fresh process. RSS is the "
        "resident-set delta after `gc.collect()`; the snapshot is `pickle.dumps((state, evicted))` per store, "
        "as `SenseLogic.snapshot` does.",
        "",
        table(
            [
                "keys",
                "stores (driven)",
                "events driven",
                "keys with open alerts",
                "RSS B/key (built)",
                "RSS B/key (restored)",
                "snapshot B/key",
                "full snapshot s",
                "restore s",
            ],
            [
                [
                    f"{r['keys']:,}",
                    f"{r['stores']} ({r['driven_stores']})",
                    f"{r['events']:,}",
                    f"{r['open_keys']:,} ({r['open_keys'] / r['keys']:.1%})",
                    f"{r['rss_per_key']:.0f}",
                    f"{r['rss_restored_per_key']:.0f}",
                    f"{r['snapshot_per_key']:.0f}",
                    f"{r['dump_s']:.2f}",
                    f"{r['load_s']:.2f}",
                ]
                for r in rows
            ],
        ),  # fmt: skip
        "",
        table(
            ["goal", "measured (largest run)", "met"],
            [
                ["RSS <= 2 KB per key", f"{big['rss_per_key']:.0f} B", "yes" if rss_ok else "**no**"],
                ["snapshot <= 1 KB per key", f"{big['snapshot_per_key']:.0f} B", "yes" if snap_ok else "**no**"],
                [
                    "linear growth (per-key spread across runs)",
                    f"RSS {min(lin):.0f}-{max(lin):.0f} B, snapshot {min(slin):.0f}-{max(slin):.0f} B",
                    "yes" if max(slin) <= 1.1 * min(slin) and max(lin) <= 1.25 * min(lin) else "**no**",
                ],
            ],  # fmt: skip
        ),
        "",
        "Pickled bytes per key by field of one store (the rest is shared structure):",
        "",
        table(["field", "bytes per key"], [[f"`{k}`", f"{v:.0f}"] for k, v in big["parts_per_key"].items()]),
        "",
        f"**Snapshot time.** Pickling every store once takes {big['dump_s']:.2f} s at {big['keys']:,} keys "
        f"({big['snapshot_bytes'] / 2**20:.0f} MiB; {big['store_snapshot_bytes'] / 1024:.0f} KiB per store of "
        f"{ITEMS_PER_STORE:,} items); restoring takes {big['load_s']:.2f} s. State is keyed by store, so any store "
        "that saw one event in an epoch is pickled whole at the epoch's end: with live POS every store changes "
        f"every epoch, and a {interval:g} s `--snapshot-interval` spends {big['dump_s'] / interval:.1%} of the "
        f"worker's time on snapshots at this size ({big['dump_s'] / 5:.1%} at 5 s, {big['dump_s'] / 60:.1%} at 60 s), "
        "during which the worker processes nothing (a pause of that length each epoch). The pause scales with the "
        "keys per worker, not with the event rate.",
    ]
    return "\n".join(body)


if __name__ == "__main__":
    sys.exit(main())
