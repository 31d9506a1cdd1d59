#!/usr/bin/env python3
"""Cold start and restart of `sapa serve`: three fresh data dirs, each started twice (the first
start creates the demo tenant and ingests its knowledge base). Prints the time from spawn to the
first 200 of /health/ready, and RSS 3 s later, with medians.

    python3 tests/bench/start_time.py target/release/sapa
"""
import subprocess, time, urllib.request, tempfile, os, sys, statistics
binary = sys.argv[1]
def run(d, port):
    env = dict(os.environ, SAPA_TELEMETRY__FILTER='warn', SAPA_SERVER__ADMIN_BIND='127.0.0.1:0')
    t0 = time.monotonic()
    p = subprocess.Popen([binary, '--data-dir', os.path.join(d, 'data'), 'serve', '--bind', f'127.0.0.1:{port}'], cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            with urllib.request.urlopen(f'http://127.0.0.1:{port}/health/ready', timeout=1) as r:
                if r.status == 200: break
        except Exception: pass
        if time.monotonic() - t0 > 30: raise SystemExit('not ready')
        time.sleep(0.005)
    ready = time.monotonic() - t0
    time.sleep(3)
    rss = int([l for l in open(f'/proc/{p.pid}/status') if l.startswith('VmRSS')][0].split()[1]) // 1024
    p.terminate(); p.wait()
    return ready * 1000, rss
firsts, restarts = [], []
for i in range(3):
    d = tempfile.mkdtemp()
    firsts.append(run(d, 18700 + i))
    restarts.append(run(d, 18710 + i))
print('first', [f'{a:.0f} ms {b} MB' for a, b in firsts], 'median', statistics.median(a for a, _ in firsts))
print('restart', [f'{a:.0f} ms {b} MB' for a, b in restarts], 'median', statistics.median(a for a, _ in restarts))
