"""The Twilio adapter: ``provider`` (the adapter and its spec), ``webhooks`` (signature, inbound,
status callbacks), ``sending`` (the Messages API through the SDK), ``rich`` (RCS Content
Templates), ``config`` (a channel's settings)."""

from channels_app.providers.twilio.provider import TWILIO_SPEC, TwilioProvider

__all__ = ["TWILIO_SPEC", "TwilioProvider"]
