"""The ``fracrisk`` command line: ``fracrisk demo`` (more commands join as they land)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

_COMMANDS: dict[
    str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {}


def _command(name: str, add_arguments):
    def decorator(run):
        _COMMANDS[name] = (add_arguments, run)
        return run

    return decorator


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--n", type=int, default=8000, help="patients to simulate (default 8000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--horizon",
        type=float,
        default=5.0,
        help="risk horizon in years for calibration (default 5)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing demo output directory"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples for confidence intervals (default 1000)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


@_command("demo", _demo_arguments)
def _run_demo(args: argparse.Namespace) -> int:
    from fracrisk.demo import run_demo

    run_demo(
        args.out,
        n=args.n,
        seed=args.seed,
        horizon=args.horizon,
        n_boot=args.bootstrap,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fracrisk`` command."""
    parser = argparse.ArgumentParser(prog="fracrisk", description="Survival-based fracture risk.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=(_COMMANDS[name][1].__doc__ or "").strip()))
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command][1](args)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"fracrisk {args.command}: error: {err}", file=sys.stderr)
        return 2
