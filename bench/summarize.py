#!/usr/bin/env python3
"""Summarises bench/compare.sh: the medians across runs of marina (A) and Distribution (B) from
each run's `marina bench --json` files, their ratios, the issue's targets with PASS or MISS,
each server's idle and peak RSS, and the machine's own limits beside marina's figures."""

import argparse
import csv
import glob
import json
import os
import statistics

MIB = 1024


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="compare.sh's output folder")
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--sha", type=float, required=True, help="openssl sha256 MiB/s")
    parser.add_argument("--dd", type=float, required=True, help="dd conv=fsync MiB/s")
    parser.add_argument("--cat", type=float, required=True, help="cat MiB/s")
    return parser.parse_args()


def load_runs(out, runs):
    """Every run's JSON reports that exist (run3.json, and run3-push.json beside it), each run's
    merged into one."""
    merged = []
    for i in range(1, runs + 1):
        paths = sorted(glob.glob(os.path.join(out, f"run{i}-*.json")))
        paths += glob.glob(os.path.join(out, f"run{i}.json"))
        if paths:
            merged.append({"summary": [row for p in paths for row in json.load(open(p))["summary"]]})
    return merged


def collect(reports):
    """(workload, scale, figure) -> unit, higher_is_better, and per-registry values by run."""
    rows = {}
    for report in reports:
        for row in report["summary"]:
            key = (row["workload"], row["scale"], row["figure"])
            entry = rows.setdefault(
                key, {"unit": row["unit"], "higher": row["higher_is_better"], "A": [], "B": []}
            )
            for registry in ("A", "B"):
                if row[registry] is not None:
                    entry[registry].append(row[registry])
    return rows


def median(values):
    return statistics.median(values) if values else None


def ratio(entry, a, b):
    """Above 1 means marina did better."""
    if a is None or b is None or a == 0 or b == 0:
        return None
    return a / b if entry["higher"] else b / a


def fmt(value):
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def check(conditions):
    """Each condition is (ok, text); PASS when all hold, else MISS naming what failed."""
    if any(ok is None for ok, _ in conditions):
        return "n/a"
    missed = [text for ok, text in conditions if not ok]
    return "PASS" if not missed else "MISS: " + "; ".join(missed)


def speed_target(minimum_ratio, of_dd, r, a, dd):
    """Rate targets: at least `minimum_ratio` times Distribution, and a share of dd's rate."""
    text = f">={minimum_ratio:g}x dist"
    conditions = [(None if r is None else r >= minimum_ratio, f"{fmt(r)}x < {minimum_ratio:g}x")]
    if of_dd:
        text += f", >={of_dd:.0%} of dd ({fmt(dd * of_dd)} MiB/s)"
        share = None if a is None else a / dd
        conditions.append((None if a is None else share >= of_dd, f"{share or 0:.0%} of dd < {of_dd:.0%}"))
    return text, check(conditions)


RATE_TARGETS = {
    "push-big": (1.5, 0.9),
    "push-chunked": (2.0, 0.8),
    "pull-big": (1.5, None),
    "manifest-get": (10.0, None),
    "blob-get-small": (10.0, None),
    "small-push": (4.0, None),
}


def page_target(key, rows, a):
    """p50 of the smallest scale <= 1 ms; a larger scale's p50 <= 1.5x the smallest's."""
    workload, scale, figure = key
    if figure != "p50":
        return "", ""
    scales = sorted(s for (w, s, f) in rows if w == workload and f == "p50")
    if scale == scales[0]:
        return "p50 <= 1 ms", check([(None if a is None else a <= 1.0, f"{fmt(a)} ms > 1 ms")])
    base = median(rows[(workload, scales[0], "p50")]["A"])
    limit = None if base is None else 1.5 * base
    return (
        f"<= 1.5x the {scales[0]} p50 ({fmt(limit)} ms)",
        check([(None if a is None or limit is None else a <= limit, f"{fmt(a)} ms > {fmt(limit)} ms")]),
    )


def target(key, rows, a, r, dd):
    workload = key[0]
    if workload in RATE_TARGETS:
        minimum_ratio, of_dd = RATE_TARGETS[workload]
        return speed_target(minimum_ratio, of_dd, r, a, dd)
    return page_target(key, rows, a)


def print_table(headers, lines):
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *lines)]
    for line in [headers] + lines:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())


def figures_section(rows, args, runs):
    print(f"## Medians over {runs} run(s) (each row's runs are listed below): ratio > 1 means marina did better")
    print("## (marina / dist for rates, dist / marina for latencies)")
    lines = []
    for key, entry in rows.items():
        workload, scale, figure = key
        a, b = median(entry["A"]), median(entry["B"])
        r = ratio(entry, a, b)
        text, result = target(key, rows, a, r, args.dd)
        name = workload if scale is None else f"{workload} {scale}"
        unit = figure if figure == entry["unit"] else f"{figure} {entry['unit']}"
        lines.append([name, unit, fmt(a), fmt(b), "-" if r is None else f"{r:.2f}", text, result])
    print_table(["workload", "unit", "marina", "distribution", "ratio", "target", "result"], lines)
    print()
    print("## Every run (marina | distribution)")
    lines = []
    for (workload, scale, figure), entry in rows.items():
        name = workload if scale is None else f"{workload} {scale}"
        lines.append([name, figure, " ".join(map(fmt, entry["A"])), "|", " ".join(map(fmt, entry["B"]))])
    print_table(["workload", "figure", "marina", "", "distribution"], lines)
    print()


def memory_section(out):
    with open(os.path.join(out, "memory.tsv")) as f:
        runs = list(csv.DictReader(f, delimiter="\t"))
    if not runs:
        return
    mib = lambda field: [int(r[field]) / MIB for r in runs if r[field]]
    marina_peak, dist_peak = max(mib("marina_peak_kib")), max(mib("dist_peak_kib"))
    marina_idle, dist_idle = median(mib("marina_idle_kib")), median(mib("dist_idle_kib"))
    print("## Memory (RSS from /proc: idle = VmRSS after start-up, peak = VmHWM after the run)")
    peak_result = check([
        (marina_peak <= 48, f"{marina_peak:.1f} MiB > 48 MiB"),
        (marina_peak <= dist_peak / 3, f"{marina_peak:.1f} MiB > 1/3 of {dist_peak:.1f} MiB"),
    ])
    idle_result = check([(marina_idle <= 12, f"{marina_idle:.1f} MiB > 12 MiB")])
    print_table(
        ["", "marina", "distribution", "target", "result"],
        [
            ["peak RSS MiB (max of runs)", f"{marina_peak:.1f}", f"{dist_peak:.1f}",
             f"<= 48 MiB and <= 1/3 dist ({dist_peak / 3:.1f})", peak_result],
            ["idle RSS MiB (median)", f"{marina_idle:.1f}", f"{dist_idle:.1f}", "<= 12 MiB", idle_result],
        ],
    )
    print("per run (KiB): " + "; ".join(
        f"run {r['run']}: marina idle {r['marina_idle_kib']} peak {r['marina_peak_kib']}, "
        f"dist idle {r['dist_idle_kib']} peak {r['dist_peak_kib']}" for r in runs))
    print()


def limits_section(rows, args):
    print("## The machine's limits beside marina's medians")
    pick = lambda workload: median(rows.get((workload, None, "MiB/s"), {"A": []})["A"])
    lines = [
        ["openssl dgst -sha256", f"{args.sha:.1f}", "pull-big (hashes while reading)", fmt(pick("pull-big"))],
        ["dd bs=1M conv=fsync", f"{args.dd:.1f}", "push-big", fmt(pick("push-big"))],
        ["", "", "push-chunked", fmt(pick("push-chunked"))],
        ["cat FILE > /dev/null", f"{args.cat:.1f}", "pull-big", fmt(pick("pull-big"))],
    ]
    print_table(["limit", "MiB/s", "marina workload", "MiB/s"], lines)


def main():
    args = parse_args()
    reports = load_runs(args.out, args.runs)
    if not reports:
        print("no run produced a JSON report")
        return
    rows = collect(reports)
    figures_section(rows, args, len(reports))
    memory_section(args.out)
    limits_section(rows, args)


if __name__ == "__main__":
    main()
