"""Live fan-out to sockets: room events in ``seq`` order, AI reply streams, ephemeral events
(typing, presence, read receipts), and the channel layers that carry them."""
