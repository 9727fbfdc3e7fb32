"""The one ``llm`` model look-up (``config.catalog.lookup`` and ``ModelLookups``)."""

from __future__ import annotations

import llm
import pytest

from consortium_lab.config import catalog
from consortium_lab.demo_models import MODEL_IDS

DEMO = MODEL_IDS[0]


def test_lookup_prefers_the_async_model() -> None:
    found = catalog.lookup(DEMO)
    assert isinstance(found.async_model, llm.AsyncModel) and found.model is None
    assert found.async_model.model_id == DEMO
    assert found.options_class is type(found.async_model).Options


def test_lookup_falls_back_to_the_sync_model(monkeypatch) -> None:
    sync_model = llm.get_model(DEMO)

    def no_async(model_id: str) -> llm.AsyncModel:
        raise llm.UnknownModelError(model_id)

    monkeypatch.setattr(llm, "get_async_model", no_async)
    monkeypatch.setattr(llm, "get_model", lambda model_id: sync_model)
    found = catalog.lookup("sync-only")
    assert found.async_model is None and found.model is sync_model


def test_unknown_models() -> None:
    with pytest.raises(llm.UnknownModelError):
        catalog.lookup("no-such-model-anywhere")
    assert catalog.options_class("no-such-model-anywhere") is None
    assert catalog.options_class(DEMO) is not None


def test_model_lookups_look_up_and_prepare_once_per_owner(monkeypatch) -> None:
    calls: list[str] = []
    real = catalog.lookup

    def counted(model_id: str) -> catalog.LlmModel:
        calls.append(model_id)
        return real(model_id)

    monkeypatch.setattr(catalog, "lookup", counted)
    prepared: list[object] = []

    def prepare(model: object) -> object:
        prepared.append(model)
        return model

    first, second = catalog.ModelLookups(prepare=prepare), catalog.ModelLookups()
    a = first.get(DEMO)
    assert first.get(DEMO) is a
    assert calls == [DEMO] and prepared == [a.async_model]
    # Another owner gets its own objects: what one owner prepares never reaches another.
    assert second.get(DEMO).async_model is not a.async_model


def test_an_unknown_id_is_not_remembered(monkeypatch) -> None:
    lookups = catalog.ModelLookups()
    with pytest.raises(llm.UnknownModelError):
        lookups.get("added-later")
    demo = catalog.lookup(DEMO)
    monkeypatch.setattr(catalog, "lookup", lambda model_id: demo)
    assert lookups.get("added-later") is demo  # found on its first use once it exists
