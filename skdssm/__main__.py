"""Command line: ``python -m skdssm demo [--data-home DIR] [--dataset 100k] [--max-epochs N]``."""

from __future__ import annotations

import argparse


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skdssm",
                                     description="skdssm's command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("demo", add_help=False,
                        help="train a DSSMRecommender on MovieLens-100K and show what it "
                             "recommends (python -m skdssm demo --help)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from ._demo import main as demo

        demo(rest)


if __name__ == "__main__":
    main()
