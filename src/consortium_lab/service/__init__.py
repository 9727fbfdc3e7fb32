"""The gateway as an OpenAI-compatible HTTP service: settings, auth, chat, admin API."""
