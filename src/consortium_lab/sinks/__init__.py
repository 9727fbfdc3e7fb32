"""Consumers of the event stream: the run log and the terminal printer."""
