"""The chat widget (anywidget) and what it sends to and receives from the page."""
