"""The async orchestrator: fan-out, synthesis, iteration; one stream of typed events."""
