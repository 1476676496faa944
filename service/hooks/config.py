"""What every hook type's section of the configuration (``hooks.<type>``) has in common.

Each hook type's own settings class (in ``service/hooks/<type>.py``) derives from
:class:`HookSettings`, or from :class:`EnrichingSettings` when it looks people up to map their
attributes. The settings module gathers them into ``hooks:`` through the registry.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.cache import CachePolicy
from service.directory import DirectorySet
from service.mapping import MappingRule
from service.policy import Answer, FailureAction

#: Okta gives up after 3 s; the answer must leave before that, network time included.
OKTA_TIMEOUT_SECONDS = 3.0

AttributeMap = dict[str, MappingRule]

#: A problem a hook section has with the directory section: the key below ``hooks.<type>`` ("" for
#: the section itself) and what is wrong.
DirectoryProblem = tuple[str, str]


class Section(BaseModel):
    """Strict types: ``ops_port: "9090"`` or ``start_tls: "no"`` is a mistake in the YAML that must stop
    the service naming the key, not be guessed into a number or a boolean. The document is validated
    as JSON (see ``service.settings.parse_settings``), where strict mode still reads enums from their
    string values and lists as tuples."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class HookSettings(Section):
    """What every hook type has: which identifier is looked up, and the deadline."""

    #: The answers this hook type can give when it cannot do its job (``service.policy``).
    answers: ClassVar[frozenset[Answer]] = frozenset({Answer.CONTINUE})

    #: Which identifier of the Okta user is looked up in ``directory.user_search.match_attribute``.
    #: When the event lacks it, the other one is used.
    subject: Literal["login", "email"] = "login"
    #: Everything, directory included, is answered within this many seconds.
    deadline_seconds: float = Field(2.5, gt=0, lt=OKTA_TIMEOUT_SECONDS)
    #: When less than this is left of the deadline as the handler starts (the request queued behind
    #: others), the fallback is answered at once instead of starting a lookup that cannot finish.
    min_lookup_seconds: float = Field(0.1, ge=0)

    @model_validator(mode="after")
    def _lookup_fits_the_deadline(self) -> HookSettings:
        if self.min_lookup_seconds >= self.deadline_seconds:
            raise ValueError("min_lookup_seconds must be less than deadline_seconds")
        return self

    def actions(self) -> tuple[FailureAction, FailureAction, FailureAction]:
        """The configured (``on_unknown_user``, ``on_directory_error``, ``on_missing_directory``) actions;
        none to configure here."""
        return FailureAction.CONTINUE, FailureAction.CONTINUE, FailureAction.CONTINUE

    def rule_sets(self) -> dict[str, AttributeMap]:
        """The mapping rule sets of this hook type, by configuration key (none for password import)."""
        return {}

    def rules(self) -> list[MappingRule]:
        """Every rule of this hook, whatever Okta name it feeds: what the directory must read."""
        return [rule for rules in self.rule_sets().values() for rule in rules.values()]

    def directory_problem(self, directories: DirectorySet) -> DirectoryProblem | None:
        """What this section needs of the directories and does not get, if anything: a rule naming a
        directory that is not configured, or reading groups from one without a ``groups`` section (a rule
        without ``directory`` reads the directory that holds the person: any of those without ``join``)."""
        for key, rules in self.rule_sets().items():
            for name, rule in rules.items():
                if rule.directory is not None and rule.directory not in directories.named:
                    known = ", ".join(directories.named)
                    return f"{key}.{name}.directory", f"{rule.directory[:40]!r} is not a configured directory ({known})"
                if rule.source != "groups":
                    continue
                for target in [rule.directory] if rule.directory else directories.accounts():
                    if directories.named[target].groups is None:
                        return f"{key}.{name}", f"source: groups needs a {directories.key(target)}.groups section"
        return None


class EnrichingSettings(HookSettings):
    """The hook types that enrich: look the user up (through the cache) and map attributes."""

    #: What to answer when the directory is slow, down, failing, or matches several entries.
    on_directory_error: FailureAction = FailureAction.CONTINUE
    #: What to answer when the directory has no such user.
    on_unknown_user: FailureAction = FailureAction.CONTINUE
    #: Several directories: what to answer when the person was found but a directory the mapping reads
    #: did not answer in time (``enriched_partial``): ``continue`` sends what arrived, ``deny`` (registration
    #: only) refuses the registration.
    on_missing_directory: FailureAction = FailureAction.CONTINUE
    #: Reuse of the directory's answers: freshness, stale-if-error, bound, Okta retries.
    cache: CachePolicy = CachePolicy()

    def actions(self) -> tuple[FailureAction, FailureAction, FailureAction]:
        return self.on_unknown_user, self.on_directory_error, self.on_missing_directory

    def directory_problem(self, directories: DirectorySet) -> DirectoryProblem | None:
        feeds = [config.change_feed for config in directories.named.values() if config.change_feed is not None]
        if self.cache.feed_fresh_seconds and not feeds:
            section = "a directory.change_feed section" if directories.single else "a change_feed in a directory"
            return "cache.feed_fresh_seconds", f"needs {section}: entries live that long only while it polls"
        return super().directory_problem(directories)
