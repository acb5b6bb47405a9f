"""notifyflow: durable human-in-the-loop notifications for conversational commerce, on Temporal."""

__version__ = "0.1.0"
