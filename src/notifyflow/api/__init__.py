"""The HTTP API (DESIGN §4): ``create_app`` builds it; routes are split by concern."""
