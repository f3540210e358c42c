"""Transports: JSON-RPC 2.0 over WebSocket (TCP and unix socket), downloads, and REST."""
