"""WhatsApp Business through Meta's Cloud API (provider ``whatsapp_cloud``).

``inbound`` reads webhooks, ``media`` downloads inbound files, ``outbound``
builds message objects, ``templates`` lists the account's templates,
``provider`` is the adapter.
"""
