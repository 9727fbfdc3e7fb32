"""Prompt templates and the tolerant parsers of what members and arbiters answer."""
