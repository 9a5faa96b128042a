"""Command line: argument parsing and file I/O only; the pipeline lives in suite.py."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EPILOG = """examples:
  python -m advsal_bench run configs/quick.yaml
  python -m advsal_bench run configs/mnist.yaml --output runs/mnist --set classifier.epochs=3
  python -m advsal_bench run configs/cifar10_quick.yaml --set dataset.path=data/cifar10_test.npz
  python -m advsal_bench validate configs/mnist.yaml --set attacks.fgsm.eps=[0.1,0.3]
  python -m advsal_bench bench --quick --json bench.json
  python -m advsal_bench launch --workers 2 configs/quick.yaml --output runs/quick_2w

exit codes: 0 success, 2 bad config or input (nothing written), 1 any other failure
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m advsal_bench",
        description="Detecting adversarial examples with saliency maps: run benchmark suites defined in YAML.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("suite", help="suite YAML file")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config key (value read as YAML); repeatable")

    run = sub.add_parser("run", help="run a suite end to end and write results", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    common(run)
    run.add_argument("--output", "-o", help="output directory (default: runs/<suite name>)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bars or stage messages")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="also print each stored chunk of the chunked stages (attacks, saliency)")
    run.add_argument("--fresh", action="store_true",
                     help="ignore the stage store in the output directory and recompute every stage")

    val = sub.add_parser("validate", help="validate a suite file and print the resolved config")
    common(val)

    launch = sub.add_parser("launch", help="run a suite with N multi-worker processes on this machine (localhost)")
    common(launch)
    # A string, checked in _launch: a bad count is a one-line error with exit code 2.
    launch.add_argument("--workers", "-n", required=True, metavar="N", help="number of worker processes (>= 1)")
    launch.add_argument("--output", "-o", help="output directory shared by the workers (default: runs/<suite name>)")
    launch.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop every worker after this long (exit code 124)")
    launch.add_argument("--verbose", "-v", action="store_true", help="pass -v to every worker's run")

    bench = sub.add_parser("bench", help="throughput of each stage next to a minimal TF loop (no pytest needed)")
    bench.add_argument("--quick", action="store_true", help="batch 256 only, 512 images, 3 repeats (about 25 s on 2 idle cores; JSMA keeps its 64 digits)")
    bench.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    return p


def _bench(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from .bench import run_bench
    from .store import write_json

    rows = run_bench(quick=args.quick)
    table = [[r["stage"], r["batch"], f"{r['images_per_second']:.1f}",
              "-" if r["ratio"] is None else f"{r['ratio']:.3f}", r["device"]] for r in rows]
    print(tabulate(table, headers=["stage", "batch", "images/s", "ratio to minimal loop", "device"], tablefmt="github"))
    jsma = [r for r in rows if r["stage"] == "jsma"]
    for r in jsma:
        print(f"jsma: {r['iterations']} iterations, pair search {100 * r['pairsearch_share']:.2f}% of the time")
    if args.json:
        write_json(args.json, rows)
    return 0


def _launch(args: argparse.Namespace) -> int:
    from .config import load_config
    from .errors import ConfigError
    from .launch import launch_local

    try:
        workers = int(args.workers)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ConfigError(f"--workers: expected an integer >= 1, got {args.workers!r}")
    if args.timeout is not None and not args.timeout > 0:
        raise ConfigError(f"--timeout: expected seconds > 0, got {args.timeout!r}")
    load_config(args.suite, args.overrides)  # a bad suite fails here once, not in every worker
    return launch_local(args.suite, workers=workers, overrides=args.overrides, output=args.output,
                        timeout=args.timeout, extra_args=["-v"] if args.verbose else ())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The CLI's own process: TF's C++ chatter (CPU feature notes, tf.data notices logged as errors)
    # would bury its one-line messages. Library users keep TF's settings; this is the CLI's choice.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from ._tf_quiet import import_tensorflow

        import_tensorflow()
        from .config import config_to_yaml, load_config
        from .errors import InputError
    except ImportError as exc:
        from ._tf_quiet import INSTALL_HINT

        print(f"error: {INSTALL_HINT} ({exc})", file=sys.stderr)
        return 1
    try:
        if args.command == "bench":
            return _bench(args)
        if args.command == "launch":
            return _launch(args)
        cfg = load_config(args.suite, args.overrides)
        if args.command == "validate":
            print(config_to_yaml(cfg), end="")
            print(f"{args.suite}: valid", file=sys.stderr)
            return 0
        import tensorflow as tf

        from .experiments.table1 import markdown as table1_markdown
        from .suite import run_suite

        # Each detector is a new model, so Keras/TF retracing notices are expected, not a problem.
        tf.get_logger().setLevel("ERROR")

        output = Path(args.output) if args.output else Path("runs") / cfg.name
        log = (lambda msg: None) if args.quiet else (lambda msg: print(f"[advsal_bench] {msg}", flush=True))
        from .distribute import peer_loss_guard

        with peer_loss_guard():
            verbose = 0 if args.quiet else 2 if args.verbose else 1
            results = run_suite(cfg, output, verbose=verbose, log=log, fresh=args.fresh)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one-line cause for anything unexpected
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {first}", file=sys.stderr)
        if os.environ.get("ADVSAL_DEBUG"):
            raise
        return 1
    if "worker" in results:
        print(f"worker {results['worker']}: done; worker 0 wrote {output / 'results.json'}")
        return 0
    if "table1" in results:
        print()
        print(table1_markdown(results["table1"]))
    print(f"\nresults: {output / 'results.json'}\nreport:  {output / 'report.md'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
