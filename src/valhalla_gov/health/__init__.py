"""Red / yellow / green health from real signals."""
