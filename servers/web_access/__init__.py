"""web_access: guarded fetching with a PostgreSQL HTTP cache, crawls, web search with history, usage ledger, screenshots."""
