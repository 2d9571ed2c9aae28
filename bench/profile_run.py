#!/usr/bin/env python
"""Where a runbook's time goes: a warm run profiled with cProfile (kernel and host), a cold run with py-spy.

    python bench/profile_run.py [--runbook db-pool-exhausted] [--top 25] [--cold] [--out DIR]

Starts its own sandbox (as ``run_bench.py``, the same parameters) and:

* **warm**: a warm kernel as the pool makes it, with cProfile enabled inside the kernel after the
  warm-up (dumped after every cell), runs the runbook through ``flow.investigate`` while the host
  side (papermill, nbclient, the record's scrub/hash/index) runs under cProfile in this process;
  prints the top functions of each by cumulative time;
* **cold** (``--cold``, needs ``py-spy`` from PyPI): ``smartops run`` as a new process sampled by
  ``py-spy record --subprocesses`` (the CLI and its kernel); prints the functions most often on
  the stack per process.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import free_port, log, runbook_params, warm_run  # noqa: E402

#: Runs silently after the warm-up: profile every cell of the run, dumped after each cell (a kernel
#: is killed, not asked to exit, when its run ends: nothing would run at exit).
KERNEL_PROFILE = """
def __smartops_profile(path):
    import cProfile
    prof = cProfile.Profile()
    def dump(*_):
        prof.disable()
        prof.dump_stats(path)
        prof.enable()
    get_ipython().events.register("post_run_cell", dump)
    prof.enable()
__smartops_profile({path!r})
del __smartops_profile
"""


def top(stats_path_or_prof, n: int, strip: str = "") -> str:
    out = io.StringIO()
    st = pstats.Stats(stats_path_or_prof, stream=out) if isinstance(stats_path_or_prof, str) else \
        pstats.Stats(stats_path_or_prof, stream=out)
    st.strip_dirs().sort_stats("cumulative").print_stats(n)
    text = out.getvalue()
    return text[text.index("   ncalls"):] if "   ncalls" in text else text


def warm_profile(runbook: str, params: Path, folder: Path, n: int) -> str:
    from smartops_nb.execution.kernels import WARMUP_CODE, start_warm_kernel

    kprof = folder / "kernel.prof"
    kernel = start_warm_kernel(warmup=WARMUP_CODE + KERNEL_PROFILE.format(path=str(kprof)))
    host = cProfile.Profile()
    try:
        t0 = time.perf_counter()
        host.enable()
        warm_run(kernel, runbook, params, folder / "incidents")
        host.disable()
        took = time.perf_counter() - t0
        host.dump_stats(str(folder / "host.prof"))
    finally:
        kernel.close()
    return (f"== warm {runbook}: {took:.2f} s wall (profiled; slower than unprofiled)\n"
            f"-- kernel (cells of the run, cProfile, cumulative) --\n{top(str(kprof), n)}\n"
            f"-- host (papermill, nbclient, record; cProfile, cumulative) --\n{top(host, n)}")


def cold_profile(runbook: str, params: Path, folder: Path, n: int) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    raw = folder / "cold.txt"
    t0 = time.perf_counter()
    subprocess.run([spy, "record", "--subprocesses", "-r", "250", "--format", "raw", "-o", str(raw), "--",
                    sys.executable, "-m", "smartops_nb.cli", "run", runbook, "-f", str(params),
                    "--archive", str(folder / "cold-incidents"), "--no-progress"],
                   capture_output=True, timeout=600, check=True)
    took = time.perf_counter() - t0
    return f"== cold {runbook}: {took:.2f} s wall under py-spy (250 Hz)\n" + collapsed_top(raw.read_text(), n)


IDLE = ("select (selectors.py", "poll (zmq", "wait (threading.py", "_wait_for_tstate_lock")


def collapsed_top(text: str, n: int) -> str:
    """py-spy's collapsed stacks -> per process, the functions most often on its main thread's stack
    while it was busy (samples waiting in select/poll left out), as a share of the busy samples."""
    per_proc: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    totals: collections.Counter = collections.Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        at = max((i for i, f in enumerate(frames) if f.startswith("process ")), default=-1)
        proc = frames[at].split(" --")[0][:90] if at >= 0 else "?"
        own = frames[at + 1:]
        if not own or not own[0].startswith("_run_module_as_main") or any(own[-1].startswith(i) for i in IDLE):
            continue   # another thread, or the main thread waiting
        totals[proc] += int(count)
        for f in dict.fromkeys(own):   # each function once per sample
            per_proc[proc][f] += int(count)
    out = []
    for proc, total in totals.most_common():
        out.append(f"-- {proc}: {total} busy samples of its main thread --")
        for f, c in per_proc[proc].most_common(n):
            out.append(f"{100 * c / total:5.1f}%  {f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runbook", default="db-pool-exhausted")
    ap.add_argument("--top", type=int, default=25, help="functions listed per profile (25)")
    ap.add_argument("--cold", action="store_true", help="also profile a cold run with py-spy")
    ap.add_argument("--out", default="", help="keep the profiles in this folder")
    args = ap.parse_args(argv)

    from smartops_sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="smartops-profile-") as tmp:
        folder = Path(args.out) if args.out else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        sb = Sandbox(Path(tmp) / "sandbox", free_port(), free_port(), free_port())
        try:
            log("starting the sandbox")
            sb.up(timeout=120)
            params = runbook_params(sb, folder)
            log("warm run, profiled")
            print(warm_profile(args.runbook, params, folder, args.top))
            if args.cold:
                log("cold run under py-spy")
                print(cold_profile(args.runbook, params, folder, args.top))
        finally:
            sb.down()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--collapsed":   # re-read a kept py-spy file
        print(collapsed_top(Path(sys.argv[2]).read_text(), 40))
        sys.exit(0)
    sys.exit(main())
