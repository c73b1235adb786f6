"""The journey definition: model, DSL, YAML files, validation, the expression sandbox, events."""
