"""The gateway as an OpenAI-compatible HTTP service (``consortium-lab gateway``).

Modules, bottom to top: ``traits``, ``settings`` and ``settings_docs`` (the settings and their
help); ``errors`` and ``protocol`` (the OpenAI wire format); ``metrics``; ``auth`` (tokens to
identities); ``policies`` (access rules and quotas in force); ``discovery`` (the models
offered); ``usage`` (usage records); ``chat`` (chat completions) and ``admin`` (the admin API);
``app`` (the aiohttp app, serving, start and stop).
"""
