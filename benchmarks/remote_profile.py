"""Benchmark: `edgecnn profile --on ssh://...` measures what a local profile measures.

Bar (issue 18): the p50 of a profile taken on a board through SSH is within 10% of a local profile of the
same bundle taken side by side. The local profile is the same command run here (`python -m edgecnn profile`,
a fresh process like the board's); an in-process `profile_bundle` call in this long-lived script is
measured too and reported, for reference. The "board" is this machine: Debian's sshd started here on
127.0.0.1 (generated keys, tests/sshd_board.py) and a torch-free virtualenv with the device side installed
from this checkout, so both sides run on the same CPU and any difference is the remote path's own. The
two alternate round by round (local, remote, local, ...) so load from other processes hits both alike;
the ratio is median over rounds of the remote p50 / the local p50, per artifact.

    .venv/bin/python benchmarks/remote_profile.py                       # sshd on 127.0.0.1, LeNet-5 bundle
    .venv/bin/python benchmarks/remote_profile.py --bundle export/x --rounds 7 --runs 500
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(REPO / "export" / "lenet5-digits"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--precision", default="all")
    ap.add_argument("--out", default="runs/bench-remote-profile/result.json")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "tests"))
    import sshd_board

    from edgecnn.profile.profiler import profile_bundle
    from edgecnn.remote import profile_remote

    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-remote-bench-"))
    server = sshd_board.start_sshd(tmp / "sshd")
    try:
        python = sshd_board.make_board_venv(tmp / "board")
        os.environ["HOME"] = str(sshd_board.write_ssh_home(tmp / "home", server))
        os.environ.pop("SSH_AUTH_SOCK", None)
        url = server.url(str(python))
        device_args = ["profile", "{bundle}", "--report", "{report}", "--no-progress", "--threads", args.threads,
                       "--runs", str(args.runs), "--precision", args.precision]
        p50: dict[str, dict[str, list[float]]] = {}
        local_json = tmp / "local.json"
        local_cmd = [sys.executable, "-m", "edgecnn", *[a.format(bundle=args.bundle, report=local_json)
                                                        for a in device_args]]
        for k in range(args.rounds):
            for side in ("local", "remote", "in-process"):
                if side == "local":
                    subprocess.run(local_cmd, check=True, capture_output=True, timeout=600)
                    rep = json.loads(local_json.read_text())
                elif side == "remote":
                    rep = profile_remote(url, args.bundle, device_args, log=lambda m: None)
                else:
                    rep = profile_bundle(args.bundle, threads=args.threads, runs=args.runs, precision=args.precision,
                                         progress=False, log=lambda m: None)
                for r in rep["results"]:
                    name = f"{r['artifact']} {r['backend']} t{r['threads']}"
                    p50.setdefault(name, {"local": [], "remote": [], "in-process": []})[side].append(
                        r["latency_ms"]["p50"])
            print(f"round {k + 1}/{args.rounds} done", flush=True)
    finally:
        sshd_board.stop_sshd(server)
    rows = []
    for name, sides in p50.items():
        ratios = [r / max(loc, 1e-12) for r, loc in zip(sides["remote"], sides["local"])]
        rows.append({"config": name, "local_p50_ms": statistics.median(sides["local"]),
                     "remote_p50_ms": statistics.median(sides["remote"]), "ratio_median": statistics.median(ratios),
                     "ratios": ratios, "in_process_p50_ms": statistics.median(sides["in-process"])})
    ok = all(abs(r["ratio_median"] - 1) <= 0.10 for r in rows)
    print(f"{'config':<36} {'local p50':>10} {'remote p50':>11} {'remote/local':>13} {'in-process p50':>15}")
    for r in rows:
        print(f"{r['config']:<36} {r['local_p50_ms']:>10.4f} {r['remote_p50_ms']:>11.4f} {r['ratio_median']:>13.3f} "
              f"{r['in_process_p50_ms']:>15.4f}")
    print(f"bar |remote/local - 1| <= 0.10 for every configuration: {'PASS' if ok else 'FAIL'}")
    result = {"benchmark": "remote_profile", "bundle": args.bundle, "rounds": args.rounds, "runs": args.runs,
              "threads": args.threads, "rows": rows, "bar_within_10pct": ok,
              "machine_note": f"{os.cpu_count()}-core machine shared with other jobs; the board is 127.0.0.1 "
                              "(same CPU), local and remote alternate round by round"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    from edgecnn.errors import run_script

    run_script(main)
