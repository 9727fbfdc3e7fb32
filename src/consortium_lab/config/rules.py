"""The number rules shared by config and parsing: confidences and thresholds on one scale.

:func:`normalize_confidence` is the single rule used everywhere for confidences and
thresholds: a value in ``[0, 1]`` is taken as is, a value in ``(1, 100]`` is read as a
percentage (with a warning), anything else is rejected.
"""

from __future__ import annotations

import math

__all__ = ["format_number", "normalize_confidence"]


def format_number(value: float) -> str:
    """Format a number without a useless ``.0`` (85.0 -> "85", 0.85 -> "0.85")."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def normalize_confidence(value: float | int | str) -> tuple[float, str | None]:
    """Bring a confidence or threshold onto the ``[0, 1]`` scale.

    The one rule used everywhere:

    * a value in ``[0, 1]`` is taken as is (so ``1`` means 100 %);
    * a value in ``(1, 100]`` is read as a percentage and divided by 100; a warning such as
      ``"confidence 85 read as 0.85"`` is returned alongside;
    * anything else (negative, above 100, NaN, infinite, or not a number at all) raises
      :class:`ValueError` whose message names the bad value.

    Strings must hold a plain number (``"0.85"``, ``" 85 "``); use
    :func:`parse_confidence_text` for free text such as ``"85%"`` or ``"8/10"``.

    Returns:
        ``(value, warning)`` where ``warning`` is ``None`` unless the value was rescaled.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid confidence {value!r}: expected a number, not a boolean")
    number: float
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"invalid confidence {value!r}: not a number") from None
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"invalid confidence {value!r}: out of range") from None
    else:
        raise ValueError(f"invalid confidence {value!r}: not a number")
    if math.isnan(number):
        raise ValueError(f"invalid confidence {value!r}: not a number (NaN)")
    if 0.0 <= number <= 1.0:
        return number, None
    if 1.0 < number <= 100.0:
        scaled = number / 100.0
        return scaled, f"confidence {format_number(number)} read as {format_number(scaled)}"
    raise ValueError(
        f"invalid confidence {value!r}: expected a number in [0, 1] or a percentage in (1, 100]"
    )
