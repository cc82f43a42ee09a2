"""`python -m minicompress COMMAND`: the command line (floor 6).

    tour [--json PATH] [--fast]   the end-to-end demonstration: every technique on the digits models
"""
import argparse
import sys


def tour(args):
    from . import tour as tour_module  # the tour grows with the library; see minicompress/tour.py
    return tour_module.main(json_path=args.json, fast=args.fast)


def build_parser():
    parser = argparse.ArgumentParser(prog="minicompress", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tour", help="train the zoo's models and apply every technique; print one table")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--fast", action="store_true", help="smaller budget (under 30 s)")
    p.set_defaults(func=tour)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
