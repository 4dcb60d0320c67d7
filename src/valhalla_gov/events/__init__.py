"""The live event stream: every audited change, in seq order, over SSE."""
