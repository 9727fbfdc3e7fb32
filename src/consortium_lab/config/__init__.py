"""The consortium config: fields, validation rules and the models ``llm`` can use here."""
