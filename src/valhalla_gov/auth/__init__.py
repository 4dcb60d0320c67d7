"""Who may do what: API tokens with scopes, protected mode, rate limits."""
