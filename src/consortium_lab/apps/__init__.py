"""What people run: the CLI, the Voila chat app launcher and ``connect()``."""
