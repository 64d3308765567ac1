"""``fastmotion bench``: benchmark the ops, the model, training and export; write results.json,
report.md and charts (the ``plot`` extra) into a folder."""
from __future__ import annotations

import os
import shlex

SUITES = ("ops", "model", "train", "export", "all")
DEVICES = ("cpu", "cuda")
DTYPES = ("fp32", "fp16", "bf16")
COMPILE = ("all", "key", "none")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark ops / model / train / export and write a report",
                       description="Run the benchmark suites (the same code as the pytest-benchmark suites in "
                                   "bench/) and write results.json, report.md and PNG charts into --out.")
    p.add_argument("suite", nargs="?", default="all", metavar="SUITE",
                   help=f"one of {', '.join(SUITES)} (default: all)")
    p.add_argument("--device", default=None, metavar="DEVICE", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default="fp32", metavar="DTYPE", help="fp32, fp16 or bf16 inputs of the op suite "
                   "(default fp32)")
    p.add_argument("--quick", action="store_true", help="one batch-1 shape per op, few rounds, no torch.compile "
                   "(seconds to minutes on a small CPU: see docs/performance.md)")
    p.add_argument("--tiny", action="store_true", help="the smallest sizes: checks that the suites run "
                   "(numbers are dispatch-bound)")
    p.add_argument("--out", default="bench-results", metavar="DIR", help="output folder (default: bench-results)")
    p.add_argument("--ops", default=None, metavar="OP[,OP]", help="only these ops (default: every registered op)")
    p.add_argument("--compile", default=None, metavar="WHEN", help="torch.compile provider: all, key (headline "
                   "shapes only; default) or none (default with --quick / --tiny)")
    p.add_argument("--rounds", type=int, default=None, metavar="N", help="timed rounds per case (default: 10 on "
                   "CPU, 100 on CUDA for ops; fewer with --quick)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: torch's)")
    p.add_argument("--no-plot", action="store_true", help="no PNG charts")
    p.set_defaults(func=run)


def _choice(value, name, choices):
    from fastmotion.cli import CommandError

    if value not in choices:
        raise CommandError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _command(args, suite, device, dtype, compile_policy) -> str:
    """The command line that reproduces this run, spelled out in full."""
    parts = ["fastmotion", "bench", suite, "--device", device, "--dtype", dtype, "--compile", compile_policy]
    parts += ["--quick"] if args.quick else ["--tiny"] if args.tiny else []
    for flag, value in (("--ops", args.ops), ("--rounds", args.rounds), ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts + ["--out", args.out])


def run(args) -> int:
    from fastmotion.cli import CommandError

    suite = _choice(args.suite, "SUITE", SUITES)
    dtype = _choice(args.dtype, "--dtype", DTYPES)
    if args.rounds is not None and args.rounds < 1:
        raise CommandError(f"--rounds must be a positive integer, got {args.rounds}")
    if args.threads is not None and args.threads < 1:
        raise CommandError(f"--threads must be a positive integer, got {args.threads}")
    if args.quick and args.tiny:
        raise CommandError("--quick and --tiny are two sizes: give one")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"--out must be a folder, but {args.out!r} is a file")

    import torch

    from fastmotion.ops import registry

    device = _choice(args.device or ("cuda" if torch.cuda.is_available() else "cpu"), "--device", DEVICES)
    if device == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device cuda: no CUDA device is visible (torch {torch.__version__}, "
                           f"CUDA build: {torch.version.cuda or 'no'})")
    op_names = None
    if args.ops:
        op_names = [name.strip() for name in args.ops.split(",") if name.strip()]
        unknown = [n for n in op_names if n not in registry.OPS]
        if unknown:
            raise CommandError(f"--ops: unknown op {unknown[0]!r}; registered ops: {', '.join(registry.OPS)}")
    compile_policy = _choice(args.compile or ("none" if (args.quick or args.tiny) else "key"), "--compile", COMPILE)
    if args.threads:
        torch.set_num_threads(args.threads)

    from fastmotion.benchmark import runner

    suites = list(runner.SUITES) if suite == "all" else [suite]
    command = _command(args, suite, device, dtype, compile_policy)
    paths = runner.run(suites, args.out, device=device, dtype=dtype, quick=args.quick, tiny=args.tiny,
                       op_names=op_names, compile=compile_policy, rounds=args.rounds, plot=not args.no_plot,
                       command=command)
    for path in paths:
        print(path)
    return 0
