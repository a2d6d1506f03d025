"""API keys, scopes and per-key rate limits (`keys`, `scopes`, `rate`, `middleware`)."""
