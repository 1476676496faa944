"""What reading credential files again costs, and how soon a swapped file is used.

    .venv/bin/python bench/rotation.py [--swaps 20] [--calls 200000]

1. The header secret check on every hook call (``SecretVerifier.check``) with two secrets, fixed values
   against two files read again when they change (kubelet layout): time per call, best of 5 rounds.
2. Seconds from a kubelet-style ``..data`` swap to the new value in use, while a caller reads the file
   every 5 ms (about 200 hook calls/s): one swap at a random moment of the check interval each time.

Nothing here talks to LDAP; tests/test_rotation.py measures the same swap-to-use on the running service.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from support.kubelet import MountedSecret  # noqa: E402

from service.auth import SecretVerifier  # noqa: E402
from service.secret_files import CHECK_INTERVAL_SECONDS, Fixed, SecretFile  # noqa: E402


def check_cost(calls: int, root: Path) -> dict[str, float]:
    """Microseconds per ``check`` of a matching header, fixed secrets against files."""
    secret = MountedSecret(root / "hook", {"current": "s" * 40, "next": "t" * 40})
    fixed = SecretVerifier("Authorization", [Fixed("s" * 40, "a"), Fixed("t" * 40, "b")])
    files = SecretVerifier(
        "Authorization",
        [SecretFile(secret.path(k), f"auth.secret_files[{i}]") for i, k in enumerate(("current", "next"))],
    )
    presented = ["t" * 40]
    costs = {}
    for name, verifier in (("fixed", fixed), ("files", files)):
        best = min(timeit.repeat(lambda v=verifier: v.check(presented), number=calls, repeat=5))  # type: ignore[misc]
        costs[name] = best / calls * 1e6
    return costs


def swap_to_use(swaps: int, root: Path) -> list[float]:
    secret = MountedSecret(root / "swap", {"key": "value-0"})
    file = SecretFile(secret.path("key"), "x")
    seconds = []
    for n in range(1, swaps + 1):
        deadline = time.monotonic() + random.uniform(0, CHECK_INTERVAL_SECONDS)
        while time.monotonic() < deadline:  # traffic before the swap, at a random phase of the interval
            file.read()
            time.sleep(0.005)
        swapped = secret.update({"key": f"value-{n}"})
        while file.read().value != f"value-{n}":
            time.sleep(0.005)
        seconds.append(time.monotonic() - swapped)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        costs = check_cost(args.calls, Path(directory))
        print(f"header secret check: {costs['fixed']:.2f} us fixed secrets, {costs['files']:.2f} us from files")
        seconds = swap_to_use(args.swaps, Path(directory))
    print(
        f"swap to use over {len(seconds)} swaps: min {min(seconds):.3f} s, median {statistics.median(seconds):.3f} s, "
        f"max {max(seconds):.3f} s (check interval {CHECK_INTERVAL_SECONDS} s)"
    )


if __name__ == "__main__":
    main()
