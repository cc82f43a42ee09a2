"""`python -m minicompress COMMAND`: the command line (floor 6).

    tour [--json PATH] [--fast]   the end-to-end demonstration: every technique on the digits models
    report PATH [--json OUT]      per-layer report of a model saved with mc.report.save
    figures [--out DIR] [--fast] [--only NAME ...]   the course figures (PNG), see figures/README.md
"""
import argparse
import sys


def run_tour(args):
    from . import tour as tour_module  # see minicompress/cli/tour.py
    try:
        return tour_module.main(json_path=args.json, fast=args.fast)
    except ValueError as exc:  # a bad --json path: say so, no traceback
        print(f"minicompress tour: error: {exc}", file=sys.stderr)
        return 2


def run_report(args):
    from ..report import command
    return command.run(args.path, json_path=args.json, batch=args.batch, latency=not args.no_latency)


def run_figures(args):
    from ..report import figures as figures_module
    try:
        names = figures_module.check_names(args.only)
    except ValueError as exc:
        print(f"minicompress figures: error: {exc}", file=sys.stderr)
        return 2
    figures_module.make_figures(args.out, fast=args.fast, only=names)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="minicompress", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tour", help="train the zoo's models and apply every technique; print one table")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--fast", action="store_true", help="smaller budget (under 30 s)")
    p.set_defaults(func=run_tour)
    p = sub.add_parser("report", help="per-layer report (dtype, bits, sparsity, bytes, MACs) of a saved model")
    p.add_argument("path", help="a .npz written by mc.report.save")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    p.add_argument("--batch", type=int, default=32, help="example batch size for MACs and latency (default 32)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.set_defaults(func=run_report)
    p = sub.add_parser("figures", help="make the course figures (PNG) with matplotlib, from the library's own code")
    p.add_argument("--out", default="figures", metavar="DIR", help="output directory (default: figures)")
    p.add_argument("--fast", action="store_true", help="smaller training and timing budgets (under 20 s)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="make only these figures (default: all)")
    p.set_defaults(func=run_figures)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
