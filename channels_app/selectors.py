"""Reads of the channels side: what a channel's delivery policy is and how its breaker stands."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from channels_app import resilience
from channels_app.delivery_policy import channel_delivery_policy, configured_sections
from rooms.models import Channel


def channel_policy_report(channel: Channel) -> dict[str, Any]:
    """The delivery policy a channel sets, the one its deliveries run under, and its breaker's state.

    ``configured``: the keys the config sets (canonical names); ``effective``:
    the whole policy in words (defaults filled in); ``breaker``: ``state``
    (closed / open / half-open), ``failures`` (consecutive sick failures),
    ``opened_at`` (ISO time or None), ``probe_in_flight``.
    """
    policy = channel_delivery_policy(channel.config)
    state = resilience.breaker_state(channel.id, policy.circuit_breaker)
    return {
        "configured": configured_sections(channel.config),
        "effective": policy.describe(),
        "breaker": {
            "state": state.state,
            "failures": state.failures,
            "opened_at": datetime.fromtimestamp(state.opened_at, UTC).isoformat() if state.opened_at else None,
            "probe_in_flight": state.probe_in_flight,
        },
    }
