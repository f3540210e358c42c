"""Client library and command line for the middleware daemon's JSON-RPC 2.0 WebSocket API."""
from midclt.client import AsyncClient, Client
from midclt.exceptions import CallTimeout, ClientException, ConnectError, ValidationError, ValidationErrors

__all__ = [
    "AsyncClient", "CallTimeout", "Client", "ClientException", "ConnectError", "ValidationError", "ValidationErrors",
]
