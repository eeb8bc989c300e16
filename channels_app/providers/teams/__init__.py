"""Microsoft Teams through the Bot Framework (provider ``teams``).

``auth`` verifies inbound tokens (JWT, RS256, keys from the OpenID metadata),
``activities`` reads activities, ``cards`` builds Adaptive Cards, ``tokens``
holds the bot's own client-credentials token, ``provider`` is the adapter.
"""

from channels_app.providers.teams.provider import TeamsProvider

__all__ = ["TeamsProvider"]
