"""Who sent this? Pluggable identity resolution for inbound senders.

Resolvers are listed in ``settings.ROOMKIT_IDENTITY_RESOLVERS`` and tried in
order; the first result that is not UNKNOWN wins. The inbound path then lets
``ON_IDENTITY_AMBIGUOUS`` / ``ON_IDENTITY_UNKNOWN`` hooks decide: identify,
challenge the sender, or reject the message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from rooms.enums import IdentificationStatus
from rooms.hooks import HookTrigger, contained, report_failure
from rooms.models import Channel, Identity, IdentityAddress

logger = logging.getLogger(__name__)


@dataclass
class IdentityResult:
    status: str
    identity: Identity | None = None
    candidates: list[Identity] = field(default_factory=list)
    display_name: str | None = None
    challenge: str | None = None
    reason: str = ""


class IdentityResolver(Protocol):
    def resolve(self, *, channel: Channel, address: str, display_name: str | None) -> IdentityResult:
        """Map a sender's address on a channel to a known identity, if any."""
        ...


class AddressBookResolver:
    """Looks the address up in ``IdentityAddress`` for the channel's type."""

    def resolve(self, *, channel: Channel, address: str, display_name: str | None) -> IdentityResult:
        if not address:
            return IdentityResult(IdentificationStatus.UNKNOWN)
        rows = list(
            IdentityAddress.objects.filter(channel_type=channel.channel_type, address=address).select_related("identity")[:5]
        )
        identities = list({r.identity_id: r.identity for r in rows}.values())
        if len(identities) == 1:
            return IdentityResult(IdentificationStatus.IDENTIFIED, identity=identities[0])
        if identities:
            return IdentityResult(IdentificationStatus.AMBIGUOUS, candidates=identities)
        return IdentityResult(IdentificationStatus.UNKNOWN)


@lru_cache(maxsize=1)
def _resolvers(paths: tuple[str, ...]) -> list[IdentityResolver]:
    return [import_string(p)() for p in paths]


def resolve_identity(*, channel: Channel, address: str, display_name: str | None) -> IdentityResult:
    """The first resolver's answer that is not UNKNOWN.

    Resolvers are user code run inside the inbound transaction: each is
    contained like an inline hook (a failure, a failed query included, is
    undone, logged and reported to ``ON_ERROR``), and a failed one counts as
    UNKNOWN so the next one is asked.
    """
    result = IdentityResult(IdentificationStatus.UNKNOWN)
    for resolver in _resolvers(tuple(settings.ROOMKIT_IDENTITY_RESOLVERS)):
        try:
            result = contained(resolver.resolve, channel=channel, address=address, display_name=display_name)
        except Exception as exc:
            logger.exception("identity resolver %s raised; treated as unknown", type(resolver).__name__)
            report_failure(f"resolver:{type(resolver).__qualname__}", HookTrigger.ON_IDENTITY_UNKNOWN, exc, channel_id=channel.id)
            result = IdentityResult(IdentificationStatus.UNKNOWN)
            continue
        if result.status != IdentificationStatus.UNKNOWN:
            break
    return result
