"""The pure policy core: no I/O, no mitmproxy."""
