"""GO: the band-aware playbook (PACK H) and work sessions (PACK I)."""
