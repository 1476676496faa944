"""Nested groups on Active Directory: in-chain search or tokenGroups (issue 21, item 3).

    .venv/bin/python bench/ad_groups.py [--lookups 200] [--in-chain-lookups 40]

A Samba AD DC (service/demo/samba.py) holds the demo domain with a group of 3,000 members (its own
provisioned copy: about 30 s to build the first time, then kept in the temporary directory). One person,
Ada, is three levels down a nested chain (Finance Leads < app-Payroll Admins < app-All Staff) and in a
cycle. Each row is an uncached lookup of Ada as the token hook of the README's AD example makes it (user
search, manager, groups) through :class:`service.directory.Directory`, sequential, over LDAPS, rows
interleaved so that load from other work on the machine falls on each alike:

- direct groups only: ``(member=<Ada's DN>)``;
- nested, in-chain: ``(member:1.2.840.113556.1.4.1941:=<Ada's DN>)``;
- nested, tokenGroups: the base read of ``tokenGroups``, the SID names remembered (the steady state);
- nested, tokenGroups, names forgotten before every lookup: plus the search resolving the SIDs.

Results go to stdout (Markdown).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchmark import percentile  # noqa: E402

from service.demo import ad_data  # noqa: E402
from service.demo.run import ad_document  # noqa: E402
from service.demo.samba import SambaDC  # noqa: E402
from service.demo.slapd import SERVICE_BIND_PASSWORD  # noqa: E402
from service.directory import Directory  # noqa: E402
from service.settings import parse_settings  # noqa: E402

ADA = "ada@corp.example.com"
ATTRIBUTES = frozenset({"department", "manager", "objectguid", "objectsid"})
RESOLVE = {"manager": frozenset({"userprincipalname"})}


def directory(dc: SambaDC, nested_search: str) -> Directory:
    document = ad_document(dc)
    document["directory"]["groups"]["nested_search"] = nested_search
    return Directory(parse_settings(document).directory, SERVICE_BIND_PASSWORD)


def timed(ad: Directory, memberships: frozenset[Any], forget: bool) -> float:
    if forget:
        ad.forget()
    started = time.perf_counter()
    entry = ad.lookup(ADA, ATTRIBUTES, RESOLVE, memberships)
    elapsed = time.perf_counter() - started
    assert entry is not None
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookups", type=int, default=200, help="lookups per row (default 200)")
    parser.add_argument("--in-chain-lookups", type=int, default=40, help="lookups of the in-chain row (default 40)")
    parser.add_argument("--members", type=int, default=3000, help="members of the big group (default 3000)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ad-") as workdir:
        started = time.monotonic()
        dc = SambaDC(Path(workdir) / "dc", seed=ad_data.ad_ldif(bulk_members=args.members))
        with dc:
            ready = time.monotonic() - started
            print(f"DC ready in {ready:.1f} s (from the provisioned copy: {dc.start_seconds:.2f} s)")
            rows = {
                "direct groups only": (directory(dc, "token_groups"), frozenset({"direct"}), False),
                "nested, in-chain": (directory(dc, "in_chain"), frozenset({"nested"}), False),
                "nested, tokenGroups": (directory(dc, "token_groups"), frozenset({"nested"}), False),
                "nested, tokenGroups, names forgotten": (directory(dc, "token_groups"), frozenset({"nested"}), True),
            }
            samples: dict[str, list[float]] = {name: [] for name in rows}
            for ad, memberships, forget in rows.values():
                timed(ad, memberships, forget)  # connections opened, names remembered
            for round_ in range(args.lookups):
                for name, (ad, memberships, forget) in rows.items():
                    if name == "nested, in-chain" and round_ >= args.in_chain_lookups:
                        continue
                    samples[name].append(timed(ad, memberships, forget))
            for ad, _, _ in rows.values():
                ad.close()
    print(f"\nUncached lookups of a person three levels down, a group of {args.members} members present (ms)\n")
    print("| Groups | lookups | p50 | p99 |")
    print("|---|---|---|---|")
    for name, values in samples.items():
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        print(f"| {name} | {len(values)} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
