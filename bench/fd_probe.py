"""Scratch: descriptors/RSS of one process across N pool runs (db-pool-exhausted against nothing)."""
import os, sys, time, tempfile, logging
from pathlib import Path
from smartops_nb.execution.prepare import prepare
from smartops_nb.execution.flow import investigate_on_pool
from smartops_nb.execution.kernels import KernelPool

def fds():
    return len(os.listdir("/proc/self/fd"))

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
arch = Path(tempfile.mkdtemp())
prep = prepare("db-pool-exhausted", cli={"postgres_dsn": "postgresql://x@127.0.0.1:1/x", "api_url": "http://127.0.0.1:1",
                                         "redis_url": "redis://127.0.0.1:1/0"})
pool = KernelPool(1).start()
print("start", fds(), rss(), flush=True)
for i in range(n):
    t = time.monotonic()
    r = investigate_on_pool(prep, arch, pool, incident=f"i{i}", lease_wait=60)
    print(i, fds(), rss(), f"{time.monotonic()-t:.2f}s", r and r.summary["status"], flush=True)
pool.close()
print("end", fds(), rss())
import collections, threading
def kind(f):
    try: return os.readlink(f"/proc/self/fd/{f}").split("[")[0]
    except OSError: return "gone"
kinds = collections.Counter(kind(f) for f in os.listdir("/proc/self/fd"))
print(kinds)
print([t.name for t in threading.enumerate()])
import gc; gc.collect(); print("after gc", fds())
import sys, traceback
for t in threading.enumerate():
    if t.name.startswith("Thread-"):
        print(t.name, type(t), "".join(traceback.format_stack(sys._current_frames()[t.ident])[-4:]))
print(sorted(((os.readlink(f"/proc/self/fd/{f}") if os.path.exists(f"/proc/self/fd/{f}") else "?") for f in os.listdir("/proc/self/fd"))))
