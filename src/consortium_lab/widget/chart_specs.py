"""The live charts' Vega-Lite specs, kept on disk so a chat kernel never imports altair.

The specs are built with :mod:`consortium_lab.analysis.charts` (altair, which validates each
one against the Vega-Lite schema). They read named datasets and carry no rows, so they depend
only on the code that builds them, altair's version and, for the confidence chart, the
threshold. altair and what it imports (jsonschema, narwhals, jinja2, lark) hold ~50 MB in a
process for good; a chat kernel needs only the specs' JSON. So :func:`chart_specs` reads them
from a diskcache folder in the data folder, keyed by a fingerprint of that code and those
versions, and builds what is missing in a short-lived child process
(``python -m consortium_lab.widget.chart_specs KEY...``) unless altair is already imported
here. Nothing is lost if the folder cannot be written: the specs are then built every time.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["SPEC_SOURCES", "build_specs", "chart_specs", "fingerprint", "threshold_key"]

log = logging.getLogger(__name__)

SPEC_SOURCES = (
    "consortium_lab.analysis.charts",
    "consortium_lab.analysis.rows",
    "consortium_lab.analysis.theme",
    __name__,
)
"""The modules whose code decides the specs: a change to any of them builds them again."""
BUILD_TIMEOUT = 180.0
"""Seconds the child process may take (importing altair on a loaded machine takes several)."""


def threshold_key(threshold: Any) -> str:
    """How a confidence threshold names its confidence chart in :func:`chart_specs`."""
    return f"{float(threshold or 0):.4g}"


def build_specs(keys: Iterable[str]) -> dict[str, Any]:
    """Build the specs in this process (imports altair): ``confidence`` maps each threshold
    key to its chart, since the threshold rule is part of the spec; the other charts are one
    spec each."""
    from consortium_lab.analysis import charts

    return {
        "confidence": {
            key: charts.spec(charts.confidence_chart(float(key), width="container", height=160))
            for key in keys
        },
        "member_confidence": charts.spec(
            charts.member_confidence_chart(width="container", height=160)
        ),
        "consensus": charts.spec(charts.consensus_meter(width="container", height=22)),
        # One layout per embed: the front end gives each member's cloud its own rows.
        charts.WORDS: charts.spec(charts.word_cloud()),
    }


@functools.cache
def fingerprint() -> str:
    """A hash of :data:`SPEC_SOURCES`' code and the versions of altair and Vega-Lite's schema
    it validates against (read from package metadata, without importing altair)."""
    digest = hashlib.sha256()
    digest.update(importlib.metadata.version("altair").encode())
    for name in SPEC_SOURCES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"chart specs: cannot find the source of {name}")
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:32]


def _cache() -> Any:
    import diskcache

    from consortium_lab.paths import data_dir

    return diskcache.Cache(str(data_dir() / "chart-specs"))


def _altair_loaded() -> bool:
    return "altair" in sys.modules


def _built_elsewhere(keys: list[str]) -> dict[str, Any]:
    """The specs for ``keys``, from a child process when altair is not imported here."""
    if _altair_loaded():
        return build_specs(keys)
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__, *keys],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=True,
        )
        specs: dict[str, Any] = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        # The charts matter more than the memory: build them here after all.
        stderr = getattr(exc, "stderr", None) or ""
        log.warning(
            "building the chart specs in a child process failed (%s), building them here: %s",
            exc,
            stderr[-2000:],
        )
        return build_specs(keys)
    return specs


_memo: dict[str, Any] = {}
"""This process's specs, by ``confidence/<key>`` and chart name: read or built once."""


def chart_specs(thresholds: Iterable[Any] = (0.8,)) -> dict[str, Any]:
    """The live charts' Vega-Lite specs for the widget's ``chart_specs`` trait, as
    :func:`build_specs` returns them for ``thresholds``: from this process's memory, else from
    the disk cache, else built (see the module's docstring). Returns a copy the caller may
    change."""
    keys = sorted({threshold_key(th) for th in thresholds})
    wanted = [f"confidence/{key}" for key in keys] + ["fixed"]
    missing = [name for name in wanted if name not in _memo]
    if missing:
        _fill(missing, keys)
    return copy.deepcopy(
        {"confidence": {key: _memo[f"confidence/{key}"] for key in keys}, **_memo["fixed"]}
    )


def _fill(missing: list[str], keys: list[str]) -> None:
    try:
        cache = _cache()
    except Exception as exc:  # an unwritable data folder must not cost the chat its charts
        log.warning("chart specs are not cached: %s", exc)
        cache = None
    prefix = fingerprint()
    if cache is not None:
        try:
            with cache:
                for name in missing:
                    found = cache.get(f"{prefix}/{name}")
                    if found is not None:
                        _memo[name] = json.loads(found)
        except Exception as exc:  # a damaged cache is rebuilt, never a reason to fail
            log.warning("chart specs could not be read from the cache: %s", exc)
    still = [name for name in missing if name not in _memo]
    if not still:
        return
    built = _built_elsewhere([key for key in keys if f"confidence/{key}" in still] or keys[:1])
    fresh = {f"confidence/{key}": spec for key, spec in built.pop("confidence").items()}
    fresh["fixed"] = built
    _memo.update({name: fresh[name] for name in still})
    if cache is not None:
        try:
            with cache:
                for name in still:
                    cache.set(f"{prefix}/{name}", json.dumps(fresh[name]))
        except Exception as exc:
            log.warning("chart specs could not be cached: %s", exc)


def main(argv: list[str] | None = None) -> int:
    """``python -m consortium_lab.widget.chart_specs KEY...``: the specs as JSON on stdout."""
    keys = sys.argv[1:] if argv is None else argv
    if not keys:
        print(
            "usage: python -m consortium_lab.widget.chart_specs THRESHOLD_KEY...", file=sys.stderr
        )
        return 2
    json.dump(build_specs([threshold_key(key) for key in keys]), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
