#!/usr/bin/env python3
"""Per-round ratios of an interleaved side-by-side run (benches/side_by_side.sh).

    benches/ratios.py BENCH_DIR OUT_DIR PEER [PEER ...]

OUT_DIR holds round<k>/<peer>/<workload>/run-*.json, written by the
harness's run.sh. The machine drifts by up to 1.5x within minutes, so peers
are compared only within one round (README, Performance): for every workload
and round this prints sniwalk's figure divided by each other peer's, then
the median of those ratios. The figure is proxy CPU per operation (µs/op)
for the CPU workloads, KB per connection (RSS) for the memory ones, and
for h1/h2 also the p99 latency. Prints markdown on stdout.
"""
import glob
import json
import os
import statistics
import sys

bench, out, peers = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.insert(0, os.path.join(bench, 'tools'))
import summarize  # noqa: E402  (the harness's own per-run figures)

MEMORY = ('mem_idle_conns', 'ws_idle')
ME = 'sniwalk'


def figures(round_dir):
    """{(peer, workload): {metric: median over that round's runs, 'errors': sum}}."""
    found = {}
    for f in glob.glob(os.path.join(round_dir, '*', '*', 'run-*.json')):
        if '.noisy' in f:
            continue
        r = json.load(open(f))
        found.setdefault((r['peer'], r['workload']), []).append(summarize.per_run(r))
    fig = {}
    for key, rows in found.items():
        fig[key] = {m: summarize.med([row.get(m) for row in rows]) for m in rows[0]}
        fig[key]['errors'] = sum(row.get('errors') or 0 for row in rows)
    return fig


def metrics(workload):
    if workload in MEMORY:
        return [('per_conn_rss_kb', 'KB/conn')]
    if workload in ('h1_keepalive', 'h2_keepalive'):
        return [('proxy_us_per_op', 'µs/req'), ('lat_p99_ms', 'p99 ms')]
    if workload == 'ws_echo':
        return [('proxy_us_per_op', 'µs/msg'), ('lat_p99_ms', 'p99 ms')]
    return [('proxy_us_per_op', 'µs/hs')]


rounds = sorted(glob.glob(os.path.join(out, 'round*')), key=lambda d: int(d.rsplit('round', 1)[1]))
per_round = [figures(d) for d in rounds]
workloads = sorted({k[1] for fig in per_round for k in fig},
                   key=lambda w: summarize.ORDER.index(w) if w in summarize.ORDER else 99)
others = [p for p in peers if p != ME]

print('## Per-round ratios (interleaved)\n')
print('Each round ran every peer once; a ratio is sniwalk ÷ the peer within one round.\n')
head = ['workload', 'figure'] + [f'{p} r{i + 1}' for i in range(len(rounds)) for p in peers] + \
    [f'sniwalk ÷ {p} (median of rounds)' for p in others] + ['errors']
print('| ' + ' | '.join(head) + ' |')
print('|' + ' --- |' * len(head))
for w in workloads:
    for metric, label in metrics(w):
        cells = [w, label]
        ratios = {p: [] for p in others}
        errors = 0
        for fig in per_round:
            for p in peers:
                v = fig.get((p, w), {}).get(metric)
                cells.append('-' if v is None else f'{v:,.1f}' if v < 1000 else f'{v:,.0f}')
                errors += fig.get((p, w), {}).get('errors', 0)
            mine = fig.get((ME, w), {}).get(metric)
            for p in others:
                theirs = fig.get((p, w), {}).get(metric)
                if mine is not None and theirs:
                    ratios[p].append(mine / theirs)
        for p in others:
            rs = ratios[p]
            cells.append(f'{statistics.median(rs):.2f}× ({", ".join(f"{r:.2f}" for r in rs)})' if rs else '-')
        cells.append(str(errors) if metric == metrics(w)[0][0] else '')
        print('| ' + ' | '.join(cells) + ' |')
print()
