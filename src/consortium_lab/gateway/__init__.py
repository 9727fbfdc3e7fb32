"""Every model call: cache, retries, routing, limits, quotas, pricing and metrics."""
