"""Command line: ``okta-ldap-hook serve | check-config | demo | try``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from service import __version__
from service.oauth import NullOAuthObserver, OAuthConfig
from service.ports import busy_message
from service.settings import ConfigError, Secrets, Settings, load_secrets, load_settings

if TYPE_CHECKING:
    from service.directory import Directory, DirectorySet

CONFIG_ENV = "OKTA_LDAP_HOOK_CONFIG"
DEFAULT_CONFIG = "/etc/okta-ldap-hook/config.yaml"
DEFAULT_TRY_URL = "http://127.0.0.1:8080"
DESCRIPTION = "Answers Okta inline hooks with data from an LDAP directory."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="okta-ldap-hook", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}", help="print the version")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="answer Okta inline hooks")
    serve.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG),
        help=f"configuration file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})",
    )
    serve.add_argument(
        "--reload", action="store_true", help="development: restart when a Python file of the service changes"
    )

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", help="configuration file")
    check.add_argument(
        "--probe",
        action="store_true",
        help="also read the secrets, fetch the OAuth issuer's keys, bind to the directory and look up --sample",
    )
    check.add_argument("--sample", help="login or email to look up with --probe")

    demo = commands.add_parser("demo", help="run the service on a throwaway demo directory")
    demo.add_argument("--hook-port", type=int, default=8080, help="port of the hook endpoints (default: 8080)")
    demo.add_argument("--ops-port", type=int, default=9090, help="port of /livez, /readyz, /metrics (default: 9090)")
    demo.add_argument(
        "--directory",
        choices=("openldap", "ad", "several"),
        default="openldap",
        help="openldap: a slapd (default); ad: a Samba AD domain controller with the README's AD example "
        "(root); several: three slapds, two account directories and an HR directory joined to them",
    )

    send = commands.add_parser("try", help="send Okta's example event of every hook type to a running service")
    send.add_argument("--url", default=DEFAULT_TRY_URL, help=f"the hook port's base URL (default: {DEFAULT_TRY_URL})")
    send.add_argument(
        "--header",
        default="Authorization",
        help="the header carrying the secret, read from $OKTA_HOOK_SECRET or the demo's (default: Authorization)",
    )

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _reload(args.config) if args.reload else _serve(args.config)
        if args.command == "check-config":
            return _check_config(args.config, args.probe, args.sample)
        if args.command == "try":
            from service.demo.examples import try_all

            return try_all(args.url, args.header)
        from service.demo.run import run_demo

        return run_demo(args.hook_port, args.ops_port, args.directory)
    except ConfigError as error:
        print(f"okta-ldap-hook: configuration error: {error}", file=sys.stderr)
        return 2


def _serve(config_path: str) -> int:
    from service.server import serve
    from service.telemetry import Telemetry, configure_logging

    settings = load_settings(config_path)
    secrets = _secrets(settings, config_path)  # the configuration's own errors first (exit 2), then the host's
    server = settings.server
    busy = busy_message(server.host, {"server.hook_port": server.hook_port, "server.ops_port": server.ops_port})
    if busy:
        print(f"okta-ldap-hook: {busy}", file=sys.stderr)
        return 1
    configure_logging(settings.logging.level, settings.logging.format, settings.auth.header)
    serve(settings, secrets, Telemetry())
    return 0


def _secrets(settings: Settings, config_path: str) -> Secrets:
    """The secrets the file points at; an error names the file whose key points at them, as a
    validation error does."""
    try:
        return load_secrets(settings)
    except ConfigError as error:
        raise ConfigError(f"{config_path}: {error}") from None


def _check_config(config_path: str, probe: bool, sample: str | None) -> int:
    """Exit 0 when valid (and, with --probe, when the directory answers as configured); 1 when the
    probe fails; 2 for a configuration error, secrets included. "valid" is printed only once
    everything that decides it has been read."""
    settings = load_settings(config_path)
    secrets = _secrets(settings, config_path) if probe else None
    hooks = ", ".join(hook_type.value for hook_type in settings.enabled_hooks())
    checked = "configuration and secrets valid" if probe else "valid"
    print(f"{config_path}: {checked}; hooks: {hooks}")
    if secrets is None:
        return 0
    ok = _probe(settings, secrets, sample)
    print("probe: ok" if ok else "probe: FAILED")
    return 0 if ok else 1


def _probe(settings: Settings, secrets: Secrets, sample: str | None) -> bool:
    """The issuer's keys (with ``auth.oauth``) and the directory, each reported whatever the other gives."""
    issuer_ok = settings.auth.oauth is None or _probe_issuer(settings.auth.oauth)
    return _probe_directory(settings, secrets, sample) and issuer_ok


def _probe_directory(settings: Settings, secrets: Secrets, sample: str | None) -> bool:
    """Bind with each directory's account to every one of its servers and, given a sample, look it up
    with every hook's attributes. Fails when a bind is refused (the credentials are the same for every
    server of a directory), when no server of a directory answers, or when the sample is not exactly one
    person; a server that is unreachable while another answers is a warning only (a directory server in
    maintenance must not block a deploy)."""
    from service.directory import Directory, DirectoryError

    directories = settings.directory_set()
    live = {
        name: Directory(config, secrets.of(name).bind_password, ca=secrets.of(name).ca_bundle)
        for name, config in directories.named.items()
    }
    try:
        bound = [_probe_servers(directories.key(name), directory) for name, directory in live.items()]
        if not all(bound):
            return False
        if sample and directories.single:
            return _probe_sample(settings, next(iter(live.values())), sample)
        if sample:
            return _probe_person(settings, directories, live, sample)
    except DirectoryError as error:
        print(f"directory error ({error.kind}): {error}")
        return False
    finally:
        for directory in live.values():
            directory.close()
    return True


def _probe_servers(key: str, directory: Directory) -> bool:
    """Bind to each server of one directory (configured at ``key``), saying how each went."""
    results = directory.probe_servers()
    for server, error in results.items():
        print(f"{server}: bind ok" if error is None else f"{server}: {error.kind}: {error}")
    errors = [error for error in results.values() if error is not None]
    if any(error.kind == "bind_failed" for error in errors):
        print(f"{key}: the bind was refused; check {key}.bind_dn and its password")
        return False
    if len(errors) == len(results):
        print(f"{key}: no server accepted the bind")
        return False
    if errors:
        print(f"warning: {len(errors)} of {len(results)} {key} servers failed; lookups fail over to the others")
    return True


def _probe_sample(settings: Settings, directory: Directory, sample: str) -> bool:
    """One directory: the sample's entry, with what every hook reads."""
    from service import mapping

    rules = [rule for section in settings.enabled_hooks().values() for rule in section.rules()]
    entry = directory.lookup(
        sample, mapping.required_attributes(rules), mapping.resolutions(rules), mapping.memberships(rules)
    )
    if entry is None:
        print("sample: no entry matches")
        return False
    print(f"sample: found one entry with {len(entry.attributes)} of the mapped attributes")
    for membership, groups in sorted(entry.groups.items()):
        bounded = "" if groups.complete else " (a bound of directory.groups stopped the search)"
        print(f"sample: {len(groups.names)} {membership} groups{bounded}")
    return True


def _probe_person(settings: Settings, directories: DirectorySet, live: dict[str, Directory], sample: str) -> bool:
    """Several directories: the sample found as a hook finds a person (the directory that holds them,
    then the joined ones), and for every mapped Okta name, the directory its value came from. Names and
    counts only: the values are the person's data."""
    from service.federation import Federation
    from service.hooks.base import Mapper, reads

    rules = [rule for section in settings.enabled_hooks().values() for rule in section.rules()]
    people = Federation.plan(directories, reads(rules), live.__getitem__)
    values = people.search_values(sample)
    if not values:
        print("sample: no directory holds this login (user_search.domains / strip_domains)")
        return False
    found = asyncio.run(people.find(values, time.monotonic() + 30))
    person = found.person
    if person is None:
        print("sample: no entry matches")
        return False
    print(f"sample: held by {person.home}")
    for name, reason in person.missing.items():
        print(f"sample: {name} did not answer ({reason})")
    for name, entry in person.entries.items():
        if name != person.home:
            print(f"sample: {name}: {'no entry for this person' if not entry.dn else 'joined'}")
    mapper = Mapper(person)
    for hook_type, section in settings.enabled_hooks().items():
        for key, rule_set in section.rule_sets().items():
            mapped = mapper(rule_set)
            for okta_name, rule in rule_set.items():
                source = rule.directory or person.home
                count = _count(mapped.get(okta_name))
                print(f"sample: hooks.{hook_type.value}.{key}.{okta_name} <- {source}: {count}")
    return person.missing == {}


def _count(value: str | list[str] | None) -> str:
    if value is None:
        return "no value"
    return f"{len(value)} values" if isinstance(value, list) else "1 value"


def _probe_issuer(config: OAuthConfig) -> bool:
    """Fetch the OAuth issuer's metadata and key set once, as the service does at startup."""
    from service.oauth import IssuerKeys

    failures: list[str] = []

    class Report(NullOAuthObserver):
        def fetch_failed(self, reason: str) -> None:
            failures.append(reason)

    keys = IssuerKeys(config, Report())

    async def fetch() -> bool:
        return await keys.refresh()

    if asyncio.run(fetch()):
        print(f"oauth issuer: {keys.count} usable signing key(s)")
        return True
    print(f"oauth issuer: cannot fetch its keys ({', '.join(failures)})")
    return False


def _reload(config_path: str) -> int:
    """Run ``serve`` in a child process and restart it when a source file changes (skaffold sync)."""
    sources = Path(__file__).resolve().parent

    def snapshot() -> dict[Path, float]:
        return {path: path.stat().st_mtime for path in sources.rglob("*.py")}

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (kubectl delete, skaffold) stops the child too

    signal.signal(signal.SIGTERM, stop)
    command = [sys.executable, "-m", "service", "serve", "--config", config_path]
    while True:
        seen = snapshot()
        child = subprocess.Popen(command)
        try:
            while snapshot() == seen:  # a crashed child waits here for the fix, instead of restarting
                time.sleep(1)
        except KeyboardInterrupt:
            child.terminate()
            return child.wait()
        if child.poll() is None:
            child.terminate()
            child.wait()


if __name__ == "__main__":
    sys.exit(main())
