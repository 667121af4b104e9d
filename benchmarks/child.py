"""The child process of :func:`benchmarks.run_bench`: one case, its result written as JSON.

    python -m benchmarks.child --case a --profile quick --out /tmp/a.json

Use ``python -m benchmarks`` for the whole suite with tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ._common import LIBRARIES, PROFILES, Config
from .runner import CASES, run_case


def main(argv: Sequence[str] | None = None) -> int:
    """Run one case in this process and write its result to ``--out``."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.child", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--case", required=True, choices=list(CASES))
    p.add_argument("--profile", default="full", choices=list(PROFILES))
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--libraries", default=",".join(LIBRARIES), help="comma-separated; '-' for none")
    p.add_argument("--progress", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--device-backend", default="", help="comma-separated portable_nn backend specs")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    libs = [] if args.libraries == "-" else [s for s in args.libraries.split(",") if s]
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    devices = [s for s in args.device_backend.split(",") if s]
    config = Config.for_profile(
        args.profile, repeats=args.repeats, libraries=libs, progress=progress, device_backends=devices
    )
    result = run_case(args.case, config)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result.as_dict(), f, allow_nan=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
