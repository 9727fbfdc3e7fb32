"""llm-consortium 0.8.0's own public-API tests, run against consortium_lab.

Origin: the ``tests/`` folder of the llm-consortium 0.8.0 sdist on PyPI
(``pip download --no-deps --no-binary :all: llm-consortium==0.8.0``), Apache-2.0 licensed (see
``LICENSE-llm-consortium`` beside this file; copyright its authors). The test bodies below are
copied unchanged; only the imports were changed to point at consortium_lab.

Run here (from ``tests/test_cli.py``): ``test_config_default_embedding_fields`` and the
config half of ``test_config_to_dict_includes_embedding_fields``.

Not run, with the reason (see README.md in this folder for the full list):
every test in ``test_llm_consortium.py``, ``test_arbiter_parsing.py``,
``test_embedding_service.py``, ``test_embeddings_db.py``, ``test_geometric_confidence.py`` and
``test_file_readers.py`` targets upstream's private methods or modules; ``test_cli.py``'s other
tests drive upstream's own CLI; ``test_integration.py`` replaces ``llm.get_model`` with
MagicMock objects.
"""

from consortium_lab import ConsortiumConfig  # was: from llm_consortium.models import ...


def test_config_to_dict_includes_embedding_fields():
    # Upstream's first two lines call its private ``_get_consortium_configs()``: left out.
    model_config = ConsortiumConfig(
        models={"dummy": 1},
        arbiter="dummy",
        embedding_backend="chutes",
        embedding_model="qwen3-embedding-8b",
        embedding_cache_enabled=False,
    )

    serialized = model_config.to_dict()
    assert serialized["embedding_backend"] == "chutes"
    assert serialized["embedding_model"] == "qwen3-embedding-8b"
    assert serialized["embedding_cache_enabled"] is False


def test_config_default_embedding_fields():
    config = ConsortiumConfig(models={"dummy": 1}, arbiter="dummy")

    assert config.embedding_backend is None
    assert config.embedding_model is None
    assert config.embedding_cache_enabled is True
