"""Command line of the local stack: `python -m devstack run|demo|status`."""

from __future__ import annotations

import argparse
import logging
import sys

from devstack.settings import SettingsError, add_arguments, settings_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="log devstack's own events at DEBUG")
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser("run", help="start the whole stack on loopback until Ctrl-C")
    add_arguments(run_parser)

    demo_parser = commands.add_parser("demo", help="send traffic through the router and report the mix")
    add_arguments(demo_parser)
    demo_parser.add_argument(
        "--minutes", type=float, default=3.0, help="how long to send traffic (default 3)"
    )
    demo_parser.add_argument(
        "--interval", type=float, default=None, help="seconds per report row (default: one replayed slot)"
    )
    demo_parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    demo_parser.add_argument("--out", default="out", help="folder for the CSV and PNG (default out/)")

    status_parser = commands.add_parser(
        "status", help="print health and the current decision of a running stack"
    )
    add_arguments(status_parser)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 2

    if args.command == "run":
        from devstack.stack import run

        return run(settings)
    if args.command == "status":
        from devstack.status import NotRunning, print_status

        try:
            return print_status(settings.state_file)
        except NotRunning as exc:
            print(f"devstack: {exc}", file=sys.stderr)
            return 1
    from devstack.demo import demo

    return demo(settings, minutes=args.minutes, interval=args.interval, rate=args.rate, out_dir=args.out)


if __name__ == "__main__":
    sys.exit(main())
