"""Meta's messaging platform: WhatsApp Business (Cloud API) and Messenger.

The shared pieces live here: ``signature`` (``X-Hub-Signature-256``),
``webhooks`` (the ``hub.challenge`` handshake and the envelope), ``graph``
(Graph API calls and the classification of its errors), ``window`` (the
24-hour customer-service window). ``whatsapp`` and ``messenger`` are the
adapters built on them.
"""
