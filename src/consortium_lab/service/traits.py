"""Trait types the service's settings need beyond traitlets' own: file paths and pydantic models.

Both accept what a YAML file or a Python config file naturally holds (a string, a dict) and
store the typed value, so the rest of the service never sees the raw form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from traitlets import TraitError, TraitType, Undefined


class PathTrait(TraitType[Path | None, str | Path | None]):
    """A file or folder path: a string or :class:`~pathlib.Path`, stored as a ``Path``."""

    info_text = "a file path"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_none", True)
        super().__init__(None, **kwargs)

    def validate(self, obj: Any, value: Any) -> Path | None:
        if value is None:
            return None
        if isinstance(value, Path):
            return value
        if isinstance(value, str) and value:
            return Path(value)
        self.error(obj, value)


def pydantic_message(exc: ValidationError, prefix: str) -> str:
    """The first error of ``exc`` as ``prefix.field: message``."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{prefix}.{where}: {first['msg']}" if where else f"{prefix}: {first['msg']}"


class ModelTrait(TraitType[Any, Any]):
    """A pydantic model: an instance, or a mapping validated into one (errors name the field).

    Its default is written as a plain dict in a generated config file, so the file stays
    valid Python that needs no imports.
    """

    def __init__(self, model: type[BaseModel], default_value: Any = Undefined, **kwargs: Any):
        self.model = model
        self.info_text = f"a {model.__name__} mapping ({', '.join(model.model_fields)})"
        if default_value is Undefined and not kwargs.get("allow_none"):
            default_value = model()
        super().__init__(default_value, **kwargs)

    def validate(self, obj: Any, value: Any) -> Any:
        if value is None and self.allow_none:
            return None
        if isinstance(value, self.model):
            return value
        if not isinstance(value, dict):
            self.error(obj, value)
        try:
            return self.model.model_validate(value)
        except ValidationError as exc:
            raise TraitError(pydantic_message(exc, self.name or self.model.__name__)) from None

    def make_dynamic_default(self) -> Any:
        # Each settings object gets its own copy (pydantic models are mutable).
        default = self.default_value
        return default.model_copy(deep=True) if isinstance(default, BaseModel) else default

    def default_value_repr(self) -> str:
        default = self.default_value
        return repr(default.model_dump() if isinstance(default, BaseModel) else default)


class ModelDict(TraitType[dict[str, Any], dict[str, Any]]):
    """A mapping of names to one pydantic model (errors name the key and the field)."""

    def __init__(self, model: type[BaseModel], **kwargs: Any) -> None:
        self.model = model
        self.info_text = f"a mapping of names to {model.__name__} mappings"
        super().__init__({}, **kwargs)

    def validate(self, obj: Any, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(obj, value)
        checked: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TraitError(f"{self.name}: keys must be strings (got {key!r})")
            if isinstance(item, self.model):
                checked[key] = item
                continue
            if not isinstance(item, dict):
                raise TraitError(f"{self.name}[{key!r}]: expected a {self.model.__name__} mapping")
            try:
                checked[key] = self.model.model_validate(item)
            except ValidationError as exc:
                raise TraitError(pydantic_message(exc, f"{self.name}[{key!r}]")) from None
        return checked

    def make_dynamic_default(self) -> dict[str, Any]:
        return {}
