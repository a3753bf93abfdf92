"""`python -m serve_app.bench.scaleout` (part of `make bench`): S4, then S1 and S2, written to
docs/bench/scaleout.json and merged by target id into docs/bench/bench.json and bench.md.

S4 (scaleout/ingress.py): two ingress replicas ÷ one, a local Ray. S1, S2 (scaleout/nodeloss.py): a head and three
worker nodes started with `gateway node`, the gateway on them with `gateway run --address`, a worker killed
under load. `--short`: the identity model and no S4 (what tests/integration/test_scaleout.py runs, ~2 minutes).
Loopback only; about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from serve_app.bench import report
from serve_app.bench.harness import open_gateway_registry, progress_ticker
from serve_app.bench.judge import LE, judge
from serve_app.config.serve_env import use_fast_path


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.scaleout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--short", action="store_true", help="identity model, no S4, no merge (tests)")
    parser.add_argument("--json-out", type=Path, default=None, help="write the report here (with --short)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the node-loss stream")
    parser.add_argument("--repeats", type=int, default=5, help="S4's repeats")
    parser.add_argument("--window", type=float, default=10.0, help="S4's window (s)")
    return parser.parse_args(argv)


def node_rows(run: dict) -> list[dict]:
    problems = [f"{run['wrong']} answers were wrong"] if run["wrong"] else []
    s1 = judge("S1", f"worker node killed under a steady load at 70% of capacity ({run['rate_rps']:g} req/s): "
               f"requests failed ({run['failed']}) − requests in flight at the kill ({run['in_flight_at_kill']}); "
               f"{run['wrong']} wrong of {run['requests']}", [run["failed"] - run["in_flight_at_kill"]], LE, 0,
               problems)
    s2 = judge("S2", f"seconds from the kill until the model answers again (the lost replica back on the third worker "
               f"after {run['replica_back_s']} s)", [run["recovery_s"]], LE, 30)
    return [s1, s2]


def main(argv=None) -> int:
    args = parse_args(argv)
    use_fast_path()  # before Ray starts (S4's local Ray; the cluster's nodes get it from `gateway node`)
    from serve_app.bench.scaleout import ingress, nodeloss
    from serve_app.builders import bbc

    result: dict = {}
    with progress_ticker("scaleout") as tick, tempfile.TemporaryDirectory(prefix="gateway-scaleout-") as work:
        if not args.short:
            registry = open_gateway_registry(None)
            clf_dir = registry.pull(registry.resolve("classifier@stable"))
            _, held_out = bbc.split(bbc.load_articles())
            result["s4"] = ingress.measure(clf_dir, [a.text for a in held_out][:256], args.repeats, args.window,
                                           tick)
        result["node_loss"] = nodeloss.measure(Path(work), classifier=not args.short, seconds=args.seconds,
                                               tick=tick)
    rows = node_rows(result["node_loss"]) + ([ingress.s4_row(result["s4"])] if "s4" in result else [])
    result["targets"] = rows
    text = json.dumps(result, indent=2, default=str) + "\n"
    if args.short:
        (args.json_out.write_text(text) if args.json_out else sys.stdout.write(text))
        return 0
    (args.out / "scaleout.json").write_text(text)
    report.merge_step(args.out, "scaleout", rows)
    for row in rows:
        print(f"{row['id']}: {row['value']} (target {row['target']}) {row['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
