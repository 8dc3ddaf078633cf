"""documentation: private, versioned documentation and API specs, searchable by meaning."""
