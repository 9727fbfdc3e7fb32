"""consortium_lab."""
