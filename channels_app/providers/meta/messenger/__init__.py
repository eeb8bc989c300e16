"""Messenger on Meta's platform (provider ``messenger``).

``inbound`` reads page webhooks (messages, postbacks, quick replies,
attachments, delivery and read watermarks), ``outbound`` builds Send API
messages, ``provider`` is the adapter (the 24-hour window and message tags,
sender actions).
"""
