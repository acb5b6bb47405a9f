"""Outbound channels behind one interface: WhatsApp through Twilio, Instagram, console."""
