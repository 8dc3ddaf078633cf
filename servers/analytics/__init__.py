"""analytics: registered datasets, safe read-only SQL, local charts, persisted predictions and patterns."""
