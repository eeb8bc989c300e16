"""WhatsApp Personal through neonize (a QR-linked device kept connected by a supervisor)."""

from channels_app.providers.neonize.provider import NeonizeWhatsAppProvider

__all__ = ["NeonizeWhatsAppProvider"]
