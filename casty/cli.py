"""The ``casty`` command.

Each command group registers itself on the top-level parser with an ``_add_<group>`` function
and binds a handler ``(args) -> exit status`` through ``set_defaults(handler=...)``; a new
group (``demo``, ``node``, ``status``) is one more such function listed in `_GROUPS`. Optional
dependencies are imported inside handlers, so ``casty --help`` works on a bare install.

Exit status: 0 on success, 1 when the command failed (the reason goes to stderr), 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from casty.errors import CastyError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _certs() -> Any:
    try:
        import casty.certs
    except ImportError as exc:
        raise CastyError(
            f"certificate tooling needs cryptography ({exc}); install it with "
            "`pip install 'casty[tls]'`"
        ) from exc
    return casty.certs


@contextmanager
def _cert_messages(certs: Any) -> Iterator[None]:
    # The library's warnings become stderr lines; its refusal to overwrite names the option.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except certs.OverwriteRefused as exc:
            raise CastyError(
                f"refusing to overwrite {', '.join(exc.paths)}; pass --force to replace"
            ) from exc
        finally:
            for warning in caught:
                print(f"casty: warning: {warning.message}", file=sys.stderr)


def _cert_create_ca(args: argparse.Namespace) -> int:
    certs = _certs()
    with _cert_messages(certs):
        files = certs.create_ca(
            args.out,
            common_name=args.common_name,
            days=args.days,
            key_type=args.key_type,
            force=args.force,
        )
    print(f"wrote {files.cert}")
    print(f"wrote {files.key} (keep it secret: it signs cluster members)")
    return 0


def _cert_create_node(args: argparse.Namespace) -> int:
    certs = _certs()
    with _cert_messages(certs):
        files = certs.create_node_certificate(
            args.name,
            args.ca_dir,
            args.out,
            sans=args.san or None,
            days=args.days,
            key_type=args.key_type,
            force=args.force,
        )
    print(f"wrote {files.cert}")
    print(f"wrote {files.key}")
    return 0


def _cert_info(args: argparse.Namespace) -> int:
    # --json: the first certificate's fields at the top level (the shape of a one-certificate
    # file), and every certificate of the file under "certificates". Text: one block per
    # certificate, headed "certificate: I of N" when the file holds several.
    info = _certs().certificate_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    described: list[dict[str, Any]] = info["certificates"]
    for index, certificate in enumerate(described, 1):
        if len(described) > 1:
            if index > 1:
                print()
            print(f"certificate: {index} of {len(described)}")
        for key, value in certificate.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key}: {shown}")
    return 0


def _add_cert(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cert = commands.add_parser("cert", help="create and inspect TLS certificates")
    actions = cert.add_subparsers(dest="action", required=True, metavar="ACTION")

    create_ca = actions.add_parser("create-ca", help="create a cluster CA (ca.pem, ca.key)")
    create_ca.add_argument("--out", default=".", help="directory to write (default: .)")
    create_ca.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    create_ca.add_argument("--common-name", default="Casty CA", help="the CA's subject CN")
    create_ca.set_defaults(handler=_cert_create_ca)

    create_node = actions.add_parser(
        "create-node", help="create NAME.pem and NAME.key signed by the CA"
    )
    create_node.add_argument("name", metavar="NAME", help="node name (the subject CN)")
    create_node.add_argument("--ca-dir", default=".", help="where ca.pem and ca.key are")
    create_node.add_argument("--out", default=None, help="directory to write (default: CA dir)")
    create_node.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="SAN",
        help="DNS name or IP address; repeatable (default: localhost and 127.0.0.1)",
    )
    create_node.add_argument("--days", type=int, default=825, help="validity (default 825)")
    create_node.set_defaults(handler=_cert_create_node)

    for sub in (create_ca, create_node):
        sub.add_argument("--key-type", choices=("ec", "rsa"), default="ec")
        sub.add_argument("--force", action="store_true", help="overwrite existing files")

    info = actions.add_parser(
        "info", help="describe a PEM certificate (each certificate of a bundle)"
    )
    info.add_argument("path", metavar="PATH")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=_cert_info)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from casty.demo.command import add_demo  # argparse only; the demo imports on run

    add_demo(commands)


def _add_node(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from casty.node_command import add_node  # argparse only; the node imports on run

    add_node(commands)


def _status(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from casty.client.status import contact_problem, fetch_status, render_status

    # The client's own warnings repeat the reason the final error line gives.
    logging.getLogger("casty").setLevel(logging.ERROR)
    document = asyncio.run(
        fetch_status(
            args.contact,
            system_name=args.system_name,
            transport=args.transport,
            timeout=args.timeout,
        )
    )
    if args.json or document["members"]:
        print(json.dumps(document, indent=2) if args.json else render_status(document))
    problem = contact_problem(document)
    if problem is not None:  # exit 1, so that a health check notices
        raise CastyError(problem)
    return 0


def _add_status(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show a cluster's members, leader and shards (as a client, not joining)",
        description=(
            "Connect to a member as a ClusterClient (without joining) and print the members "
            "(address, node id, status, roles, reachability), the leader and the shards per "
            "node. Exits 1 when no contact point answers or the contact is not a member yet."
        ),
    )
    status.add_argument("--contact", required=True, metavar="HOST:PORT", help="a member")
    status.add_argument("--system-name", default="casty", help="the cluster's name (casty)")
    status.add_argument("--transport", default="tcp://", help="transport URL (tcp://)")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)


_GROUPS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_cert,
    _add_demo,
    _add_node,
    _add_status,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``casty`` argument parser with every command group registered."""
    parser = argparse.ArgumentParser(prog="casty", description="Casty actor framework tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_group in _GROUPS:
        add_group(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``casty`` command with ``argv`` (default ``sys.argv[1:]``); return the status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except CastyError as exc:
        print(f"casty: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
