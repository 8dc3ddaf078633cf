"""code_quality: local, persisted code analysis with history, new-vs-fixed, gates and refactoring hints."""
