"""The inbound path: everything that enters a room goes through ``process_inbound``.

``process`` runs the steps; the other modules each hold one of them: ``routing``
and ``route_cache`` (which room), ``senders`` and ``identity`` (who sent it),
``group_commit`` (messages arriving together share a transaction),
``statements`` and ``fast_insert`` (the hot path's SQL), ``fanout``,
``visibility``, ``transcoding`` and ``sms_encoding`` (who gets the event, in
what form) and ``after_commit`` (what is owed once it is stored).
"""

from rooms.inbound.messages import InboundMessage, InboundResult
from rooms.inbound.process import process_inbound

__all__ = ["InboundMessage", "InboundResult", "process_inbound"]
