"""objtransport: one asyncio API to exchange messages over TCP, TLS, UDP, WebSocket and gRPC."""
