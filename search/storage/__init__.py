"""Storage: opening a study database (URLs, first-time setup, read-only opens) and riding out its outages."""
