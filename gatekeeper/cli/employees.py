"""`gatekeeper employee add|remove|list`: the employees of approvals.yaml, edited byte for byte
like `grant` (gatekeeper.approvals_edit), so comments and formatting stay.

`remove` refuses while the employee holds grants, naming them; `--force` removes the grants in
the same edit. People of the office directory are listed too but come and go with its group.
"""

from __future__ import annotations

import argparse

from gatekeeper import approvals_edit
from gatekeeper.cli.approver import RELOAD_NOTE, _print_json, _reporting, _table
from gatekeeper.cli.common import CommandHandler, config_dir_arg, state_dir_arg
from gatekeeper.config.loader import load_policy
from gatekeeper.directory.store import office_policy


def add_employee(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "employee", help="add, remove or list employees",
        description="Add, remove or list the employees of approvals.yaml (comments and "
        "formatting are kept; the result is validated before it is written). The running "
        "proxy picks changes up through its live reload.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = _action(actions, "add", "add an employee", run_add,
                  "Add EMPLOYEE (the user name they sign in to the proxy with) with their "
                  "company e-mail address and, optionally, the addresses of their own devices.")
    add.add_argument("employee", metavar="EMPLOYEE", help="the new employee id")
    add.add_argument("--email", required=True, metavar="ADDRESS",
                     help="their company e-mail address (in one of company_domains)")
    add.add_argument("--address", dest="addresses", action="extend", nargs="+", default=[],
                     metavar="IP", help="an IP address or network of their own device "
                     "(repeatable), to know them without a proxy sign-in")
    remove = _action(actions, "remove", "remove an employee", run_remove,
                     "Remove EMPLOYEE from approvals.yaml. Refused while they hold grants "
                     "(the message names them) unless --force, which removes the grants too.")
    remove.add_argument("employee", metavar="EMPLOYEE", help="an employee id from approvals.yaml")
    remove.add_argument("--force", action="store_true",
                        help="also remove the employee's grants")
    listing = _action(actions, "list", "list the employees", run_list,
                      "List the employees with their e-mail, device addresses and grants "
                      "(and, with an office directory, its people). Changes nothing.")
    listing.add_argument("--json", action="store_true", help="print a JSON array of objects")


def _action(actions: argparse._SubParsersAction, name: str, summary: str, run: CommandHandler,
            description: str) -> argparse.ArgumentParser:
    p = actions.add_parser(name, help=summary, description=description)
    config_dir_arg(p)
    state_dir_arg(p)
    p.set_defaults(handler=_reporting(run), command=f"employee {name}")
    return p


def run_add(args: argparse.Namespace) -> int:
    result = approvals_edit.add_employee(args.config_dir, args.employee, args.email,
                                         addresses=args.addresses, state_dir=args.state_dir)
    devices = f", devices {', '.join(args.addresses)}" if args.addresses else ""
    print(f"added: employee {result.employee} <{result.email}>{devices} to {result.path}; "
          f"{RELOAD_NOTE}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    result = approvals_edit.remove_employee(args.config_dir, args.employee, force=args.force,
                                            state_dir=args.state_dir)
    grants = f" and their grants for {', '.join(result.revoked)}" if result.revoked else ""
    print(f"removed: employee {result.employee} <{result.email}>{grants} from {result.path}; "
          f"{RELOAD_NOTE}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    policy = office_policy(args.config_dir, args.state_dir)
    in_file = load_policy(args.config_dir).employees
    rows = [
        {
            "id": e.id,
            "email": e.email,
            "name": e.display_name,
            "addresses": [str(n) for n in e.addresses],
            "grants": sorted(s for (who, s) in policy.grants if who == e.id),
            "source": "approvals.yaml" if e.id in in_file else "directory",
        }
        for e in sorted(policy.employees.values(), key=lambda e: e.id)
    ]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no employees")
        return 0
    table = [("EMPLOYEE", "EMAIL", "NAME", "ADDRESSES", "SOURCE", "GRANTS")]
    table += [(r["id"], r["email"], r["name"], ", ".join(r["addresses"]) or "-", r["source"],
               ", ".join(r["grants"]) or "-") for r in rows]
    print(_table(table))
    return 0
