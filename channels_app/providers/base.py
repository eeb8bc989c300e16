"""The transport adapter protocol and its registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.http import HttpRequest, HttpResponse, JsonResponse

from rooms.inbound import InboundMessage, InboundResult
from rooms.models import Channel, Delivery
from rooms.registries import ProviderConfigField

# One key of a channel's config that a provider reads (shown and checked by the admin). It is the
# record the admin reads through ``rooms.registries`` (rooms cannot import this app), under the
# name the adapters use.
ConfigField = ProviderConfigField


@dataclass
class SendResult:
    """How one send ended, classified by the adapter that knows its vendor.

    Two questions about a failure: may the same send succeed later
    (``retryable``), and does it say the vendor or the network is sick
    (``sick``, which counts toward the channel's circuit breaker)? By default
    the answers go together: a network error, a timeout, a 5xx, 408 or 429 is
    both; a permanent 4xx for one bad recipient is neither. An adapter whose
    vendor says otherwise sets ``counts_against_breaker`` explicitly.
    """

    ok: bool
    provider_message_id: str = ""
    error: str = ""
    # False for errors a retry cannot fix (a 4xx other than 408/429).
    retryable: bool = True
    # Seconds the provider asked us to wait (Retry-After), if any.
    retry_after: float | None = None
    # None: follow ``retryable``. True/False: this failure does / does not count toward the breaker.
    counts_against_breaker: bool | None = None
    # The vendor's status for an accepted send ("queued" or "sent"; a DeliveryStatus value); empty: sent.
    status: str = ""
    # The vendor's error code, for a failure.
    error_code: str = ""
    # How it went where the channel can fall back (RCS sent as "sms"); empty when there is no choice.
    sent_as: str = ""

    @property
    def sick(self) -> bool:
        """Whether this failure says the vendor or the network is unwell (counts toward the breaker)."""
        if self.ok:
            return False
        if self.counts_against_breaker is not None:
            return self.counts_against_breaker
        return self.retryable


@dataclass
class StatusUpdate:
    provider_message_id: str
    status: str  # a rooms.enums.DeliveryStatus value
    error: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    error_code: str = ""
    # How the vendor carried it, when the callback says (RCS or its SMS fallback).
    sent_as: str = ""


@dataclass(frozen=True)
class ProviderSpec:
    """What a provider needs and offers, for the admin's channel form and ``add_channel``.

    ``webhook`` says how its inbound requests are verified: ``"signature"``
    (the vendor signs them), ``"token"`` (the vendor cannot sign: the webhook
    URL carries a per-channel secret token), or ``""`` (it takes no webhooks).
    ``one_of`` lists groups of config keys of which at least one must be set
    (Twilio's ``from`` or ``messaging_service_sid``); ``one_of_types``, when
    set, limits them to those channel types (a Twilio voice channel sends no
    messages, so it needs neither).
    """

    label: str
    channel_types: frozenset[str]
    config_fields: tuple[ConfigField, ...] = ()
    secrets: tuple[str, ...] = ()
    required_secrets: tuple[str, ...] = ()
    webhook: str = "signature"
    status_callbacks: bool = True
    one_of: tuple[tuple[str, ...], ...] = ()
    one_of_types: frozenset[str] = frozenset()

    def config_errors(self, config: dict[str, Any], channel_type: str | None = None) -> list[tuple[str, str]]:
        """What is missing from ``config`` for a ``channel_type`` channel, as ``(key, message)`` pairs; empty when complete."""
        errors = [
            (f.name, f"{f.label} is required")
            for f in self.config_fields
            if f.required and not str(config.get(f.name) or "").strip()
        ]
        if self.one_of_types and channel_type is not None and channel_type not in self.one_of_types:
            return errors
        for group in self.one_of:
            if not any(str(config.get(k) or "").strip() for k in group):
                errors.append((group[0], "one of " + ", ".join(group) + " is required"))
        return errors


def delivery_idempotency_key(delivery: Delivery) -> str:
    """The key a vendor sees on every attempt of one delivery, so a retry after a lost answer sends nothing twice."""
    return f"roomkit-{delivery.event_id}-{delivery.pk}"


def configuration_failure(message: str, *, error_code: str = "not_configured") -> SendResult:
    """A send that the channel's own configuration stops (a key or secret missing).

    It fails at once: no retry can fix it, and it says nothing of the vendor's
    health, so it does not count toward the breaker.
    """
    return SendResult(False, error=message, retryable=False, counts_against_breaker=False, error_code=error_code)


@dataclass
class InboundParse:
    """What an adapter read from one verified webhook, for the view to store; the adapter itself writes nothing.

    ``messages`` go through ``process_inbound``, ``status_updates`` to their
    deliveries (a vendor that sends every event to one URL puts either in
    either). ``response``: the answer for a request that carried no message
    (an event acknowledged but not acted on); a request with messages is
    answered by the adapter's ``inbound_response``, and one with neither by
    ``{"updated": n}``.
    """

    messages: list[InboundMessage]
    response: HttpResponse | None = None
    status_updates: list[StatusUpdate] = field(default_factory=list)


def inbound_json_response(results: list[InboundResult]) -> JsonResponse:
    """The JSON answer to a vendor for its stored message: the event, its room and seq, whether it was a repeat."""
    r = results[0]
    return JsonResponse(
        {"event_id": r.event_id, "room_id": r.room_id, "seq": r.seq, "duplicate": r.duplicate, "status": r.status}
    )


class TransportProvider(Protocol):
    name: str
    spec: ProviderSpec

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        """True when the request really comes from the vendor (signature check)."""
        ...

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        """Turn a verified webhook into messages (and status updates, where the vendor sends them here too).

        Reads only: the view stores what comes back. Raises InvalidInput on bad payloads.
        """
        ...

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        """What to answer the vendor once its messages are stored (``results`` holds one or more)."""
        ...

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate] | InboundParse:
        """Turn a verified delivery-status callback into status updates.

        Reads only: the view applies them. A vendor that may send messages to
        this URL too returns an ``InboundParse`` (messages, status updates and
        an optional answer) instead of the plain list.
        """
        ...

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        """GET verification handshakes (Meta's hub.challenge); None if unsupported."""
        ...

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        """Send one delivery; never raises for vendor errors, returns them."""
        ...


_registry: dict[str, Callable[[], TransportProvider]] = {}
_instances: dict[str, TransportProvider] = {}


def register_provider(name: str, factory: Callable[[], TransportProvider]) -> None:
    _registry[name] = factory
    _instances.pop(name, None)


def get_provider(name: str) -> TransportProvider | None:
    if name not in _instances:
        factory = _registry.get(name)
        if factory is None:
            return None
        _instances[name] = factory()
    return _instances[name]


def provider_names(channel_type: str | None = None) -> list[str]:
    """Registered provider names, or those that serve ``channel_type``."""
    if channel_type is None:
        return sorted(_registry)
    return sorted(n for n in _registry if channel_type in get_provider(n).spec.channel_types)
