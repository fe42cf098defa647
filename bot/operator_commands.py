"""`shopbot operators add NAME | remove NAME | list`: the people who answer in the console."""

from __future__ import annotations

import argparse
import getpass
import sys

from bot.errors import UserError
from bot.operators import OperatorAccounts
from bot.settings import Settings


def operators(settings: Settings, args: argparse.Namespace) -> int:
    accounts = OperatorAccounts(settings.console.operators_file)
    if args.operators_command == "list":
        for operator in accounts.list():
            print(f"{operator.username}\t{operator.display_name}")
        return 0
    if args.operators_command == "remove":
        if not accounts.remove(args.username):
            raise UserError(f"there is no operator '{args.username}'")
        print(f"removed {args.username}: their sessions end at their next request")
        return 0
    password = _new_password()
    try:
        operator = accounts.add(args.username, password, args.display_name or "")
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    print(f"operator {operator.username} ({operator.display_name}) can log in at /console")
    return 0


def _new_password() -> str:
    """Asked twice on a terminal; the first line of stdin otherwise (scripts, CI)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password (at least 10 characters): ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first
