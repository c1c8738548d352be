"""``breasttumorseg study serve|tokens``: the web reader station (added to the ``study`` command).

* ``tokens STUDY [--readers a,b]``: new access tokens, printed once, stored only as scrypt hashes
  in ``STUDY/access.json`` (a reader's old token stops working);
* ``serve STUDY [--host 127.0.0.1] [--port 8080]``: the station; readers log in with their token.
"""
from __future__ import annotations

import argparse
import sys
from ._common import path_arg


def add_parsers(ss) -> None:
    """Add ``serve`` and ``tokens`` to the ``study`` command's sub-parsers *ss*."""
    q = ss.add_parser("serve", help="the web reader station for a study",
                      description="Serve the study to readers in a web browser (log in with a token from "
                                  "`study tokens`). Binds to 127.0.0.1: put it behind an HTTPS reverse proxy "
                                  "to reach it from other machines (see README, 'Web reader station').")
    q.add_argument("study", type=path_arg, metavar="STUDY")
    q.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    q.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    q.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other than loopback (only behind an HTTPS reverse proxy)")
    q.add_argument("--release-after-s", type=float, default=900.0,
                   help="an idle reader's work is saved and her scene released after this long (default: %(default)s s)")
    q.set_defaults(func=run_serve)

    q = ss.add_parser("tokens", help="issue readers' access tokens for the web station (printed once)")
    q.add_argument("study", type=path_arg, metavar="STUDY")
    q.add_argument("--readers", default=None, help="comma-separated readers (default: all readers of the study)")
    q.set_defaults(func=run_tokens)


def _need_web_extra() -> None:
    import importlib.util

    from ..core.errors import BreastTumorSegError

    missing = [m for m in ("aiohttp", "PIL", "slicer") if importlib.util.find_spec(m) is None]
    if missing:
        raise BreastTumorSegError(f"the web station needs {', '.join(missing)}. Fix: "
                                  'python -m pip install "breasttumorseg[web]"')


def run_serve(args: argparse.Namespace) -> int:
    from ..core import interrupts
    from ..core.errors import InputError
    from ..io.safety import check_input_path, check_positive

    _need_web_extra()
    from ..web.server import check_host, serve

    check_input_path(args.study, "study folder", kind="dir")
    host = check_host(args.host, args.allow_remote)
    if not 1 <= args.port <= 65535:
        raise InputError(f"{args.port} is not a port number", "--port", "give 1-65535, e.g. 8080")
    check_positive(args.release_after_s, "--release-after-s", upper=7 * 86400)
    from ..web.auth import read_access

    read_access(args.study)  # no tokens yet: one line saying how to make them, before the server starts
    serve(args.study, host, args.port, release_after_s=args.release_after_s)
    signum = interrupts.received()
    if signum is not None:  # Ctrl-C / SIGTERM stopped the server after the readers' work was saved
        print(f"breasttumorseg: {interrupts.signal_name(signum)} received; the station stopped and the readers' "
              "work is saved", file=sys.stderr)
        return interrupts.exit_code(signum)
    return 0


def run_tokens(args: argparse.Namespace) -> int:
    from ..io.safety import check_input_path
    from ..study.definition import load_study

    _need_web_extra()
    from ..web.auth import issue_tokens

    check_input_path(args.study, "study folder", kind="dir")
    study = load_study(args.study)
    readers = [study.check_reader(r.strip()) for r in args.readers.split(",") if r.strip()] \
        if args.readers else study.readers
    tokens = issue_tokens(args.study, readers)
    print("Hand each reader her token (shown only now; stored hashed in access.json):")
    for reader, token in tokens.items():
        print(f"  {reader}\t{token}")
    return 0
