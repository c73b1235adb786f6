"""Built-in connectors, registered through the same hooks as third-party plugins."""
