"""Recommendations from measurements: an evaluation's conditions and the run log (see advice.py)."""
