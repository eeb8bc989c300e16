"""The web chat as a transport: session tokens, uploads, the ``/ws/chat/`` consumer, the page and its script."""
