"""Issue 12, item 5: ``geometric_confidence`` and ``centroid_vector`` in the compat result,
computed as llm-consortium 0.8.0 does, from an ``llm`` embedding model registered through
llm's plugin hook (deterministic vectors, as llm's own tests register theirs)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator

import llm
import numpy as np
import pytest

from consortium_lab.analysis.geometry import geometry_of
from consortium_lab.compat import create_consortium
from consortium_lab.config.embedding import (
    EmbeddingBackendError,
    embedding_model_id,
    resolve_embedding_model,
)
from consortium_lab.gateway.core import Gateway
from consortium_lab.paths import upstream_db_path

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply

A = member_reply("I am A.", 0.8, "Thinking A.")
B = member_reply("I am B.", None, "Thinking B.")
# The vectors the test model gives each member's full reply.
TABLE = {"I am A.": [1.0, 0.0], "I am B.": [0.0, 1.0]}
# Hand-computed: the centroid of (1,0) and (0,1) is (.5,.5); each is at cosine 1/sqrt(2) from
# it, so at distance (1 - 1/sqrt(2)) / 2, and the confidence is 1 minus that.
EXPECTED = 1 - (1 - 1 / math.sqrt(2)) / 2


class VectorTable(llm.EmbeddingModel):
    """Embeds a text as the vector of the first key of ``TABLE`` it contains; records calls."""

    model_id = "test-vectors"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failures: list[Exception] = []

    def embed_batch(
        self, items: Iterable[str | bytes], *, key: str | None = None
    ) -> Iterator[list[float]]:
        batch = [str(i) for i in items]
        self.batches.append(batch)
        if self.failures:
            raise self.failures.pop(0)
        return iter([next(v for k, v in TABLE.items() if k in text) for text in batch])


@pytest.fixture
def vectors():
    model = VectorTable()

    class Plugin:
        @llm.hookimpl
        def register_embedding_models(self, register):
            register(model, aliases=("vectors",))

    plugin = Plugin()
    llm.pm.register(plugin, name="test-vector-table")
    try:
        yield model
    finally:
        llm.pm.unregister(plugin)


@pytest.fixture
def pair(fake_openai):
    fake_openai.add_model("a", ModelScript(reply=A))
    fake_openai.add_model("b", ModelScript(reply=B))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Both.", 0.9)))
    return fake_openai


def embedded(**settings):
    return create_consortium(
        models=["a", "b"],
        arbiter="judge",
        embedding_backend="llm",
        embedding_model="vectors",
        gateway=Gateway(cache=None, backoff=0.01),
        **settings,
    )


def test_geometry_is_computed_from_the_members_full_replies(pair, vectors):
    out = embedded(store=False).orchestrate("Q?")
    synthesis = out["synthesis"]
    assert synthesis["geometric_confidence"] == pytest.approx(EXPECTED)
    assert synthesis["centroid_vector"] == pytest.approx([0.5, 0.5])
    assert synthesis["outlier_indices"] == []
    assert out["iterations"][0]["synthesis"]["geometric_confidence"] == pytest.approx(EXPECTED)
    assert vectors.batches == [[A, B]]  # the full texts, in config order, in one batch

    # Cross-check with upstream's own calculator (imported here only).
    from llm_consortium.geometry import GeometricConfidenceCalculator

    confidence, centroid = GeometricConfidenceCalculator.compute(
        [np.array(v) for v in TABLE.values()]
    )
    assert synthesis["geometric_confidence"] == pytest.approx(confidence)
    assert synthesis["centroid_vector"] == pytest.approx(centroid.tolist())


def test_geometry_reaches_upstreams_arbiter_decisions_table(pair, vectors):
    out = embedded().orchestrate("Q?")
    with sqlite3.connect(upstream_db_path()) as conn:
        row = conn.execute(
            "SELECT geometric_confidence, centroid_vector FROM arbiter_decisions WHERE run_id = ?",
            (out["metadata"]["consortium_id"],),
        ).fetchone()
    assert row[0] == pytest.approx(EXPECTED)
    assert json.loads(row[1]) == pytest.approx([0.5, 0.5])


def test_without_a_backend_nothing_is_measured(pair, vectors):
    out = create_consortium(models=["a", "b"], arbiter="judge", store=False).orchestrate("Q?")
    assert out["synthesis"]["geometric_confidence"] is None
    assert out["synthesis"]["centroid_vector"] is None
    assert vectors.batches == []


def test_the_embedding_cache_follows_embedding_cache_enabled(pair, vectors):
    cached = embedded(store=False)
    cached.orchestrate("Q?")
    second = cached.orchestrate("Q?")
    assert vectors.batches == [[A, B]]  # the second run's texts were embedded already
    assert second["synthesis"]["geometric_confidence"] == pytest.approx(EXPECTED)
    embedded(store=False, embedding_cache_enabled=False).orchestrate("Q?")
    uncached = embedded(store=False, embedding_cache_enabled=False)
    uncached.orchestrate("Q?")
    uncached.orchestrate("Q?")
    assert len(vectors.batches) == 4


def test_a_transient_embedding_failure_is_retried(pair, vectors):
    vectors.failures.append(ConnectionError("connection reset"))
    out = embedded(store=False).orchestrate("Q?")
    assert len(vectors.batches) == 2
    assert out["synthesis"]["geometric_confidence"] == pytest.approx(EXPECTED)


def test_a_failed_embedding_keeps_the_run_and_says_why(pair, vectors):
    vectors.failures.append(ValueError("input too long for this model"))
    out = embedded(store=False).orchestrate("Q?")
    synthesis = out["synthesis"]
    assert synthesis["synthesis"] == "Both." and synthesis["confidence"] == 0.9
    assert synthesis["geometric_confidence"] is None and synthesis["centroid_vector"] is None
    assert "test-vectors: input too long for this model" in synthesis["geometry_error"]
    assert len(vectors.batches) == 1  # not worth another attempt


# Upstream's backends, mapped onto llm's embedding models or refused by name.
def test_upstream_backends_map_onto_llm_embedding_models():
    assert embedding_model_id(None, None) is None
    assert embedding_model_id("openai", None) == "text-embedding-3-small"  # upstream's default
    assert embedding_model_id("openai", "text-embedding-3-large") == "text-embedding-3-large"
    assert (
        embedding_model_id("sentence-transformers", None)
        == "sentence-transformers/all-MiniLM-L6-v2"
    )
    model = resolve_embedding_model("openai", None)
    assert model is not None and model.model_id == "text-embedding-3-small"


@pytest.mark.parametrize(
    ("backend", "model", "message"),
    [
        ("chutes", None, "embedding_backend: 'chutes' is not supported: no llm plugin"),
        ("word2vec", None, "embedding_backend: unknown backend 'word2vec'; supported: 'openai'"),
        ("llm", None, "embedding_model: embedding_backend 'llm' needs an llm embedding model"),
    ],
)
def test_backends_we_cannot_embed_with_are_refused_at_build(backend, model, message):
    with pytest.raises(EmbeddingBackendError, match=message):
        create_consortium(
            models=["a"], arbiter="judge", embedding_backend=backend, embedding_model=model
        )


def test_a_backend_without_its_llm_model_is_refused_before_any_call(pair):
    orchestrator = create_consortium(
        models=["a"], arbiter="judge", embedding_backend="sentence-transformers", store=False
    )
    with pytest.raises(
        EmbeddingBackendError,
        match="llm has no embedding model 'sentence-transformers/all-MiniLM-L6-v2' for "
        "embedding_backend 'sentence-transformers' \\(install the llm-sentence-transformers",
    ):
        orchestrator.orchestrate("Q?")
    assert pair.requests == []


# The measure itself, against upstream's on vectors with an outlier.
def test_geometry_matches_upstreams_calculator_and_outliers():
    from llm_consortium.geometry import GeometricConfidenceCalculator

    rng = np.random.default_rng(12)
    close = [np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.01, 3) for _ in range(6)]
    points = [*close, np.array([-1.0, 0.2, 0.0])]
    measured = geometry_of([p.tolist() for p in points])
    confidence, centroid = GeometricConfidenceCalculator.compute(points)
    assert measured.confidence == pytest.approx(confidence)
    assert measured.centroid == pytest.approx(centroid.tolist())
    assert measured.outliers == GeometricConfidenceCalculator.detect_outliers(points) == [6]
    with pytest.raises(ValueError, match=r"share one non-zero dimension \(got \[2, 3\]\)"):
        geometry_of([[1.0, 0.0], [1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="no vectors"):
        geometry_of([])
