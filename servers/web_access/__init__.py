"""web_access: safe web fetching, readable extraction, robots rules and link discovery."""
