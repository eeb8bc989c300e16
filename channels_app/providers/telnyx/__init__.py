"""Telnyx messaging: SMS/MMS and RCS (provider ``telnyx``).

``signature`` verifies webhooks (Ed25519), ``events`` reads them, ``rcs``
builds RCS agent messages, ``provider`` is the adapter and sends.
"""

from channels_app.providers.telnyx.provider import TelnyxProvider

__all__ = ["TelnyxProvider"]
