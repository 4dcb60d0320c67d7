"""Limits and checks in front of every route: Host allow-list, cross-site
refusal, authentication before the body, body size and time caps, response
hardening headers, and the uvicorn connection limits."""
