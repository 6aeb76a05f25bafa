"""Command line: ``python -m skdssm demo [--data-home DIR] [--dataset 100k]``."""

import sys


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "demo":
        print("usage: python -m skdssm demo [--data-home DIR] [--dataset {100k,1m,latest-small}]")
        sys.exit(2)
    from ._demo import main as demo

    demo(argv[1:])


if __name__ == "__main__":
    main()
