"""Agreement measures and Altair chart specs built from run results."""
