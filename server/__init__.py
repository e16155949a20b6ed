"""PlutosAI gRPC service: backends, store, interceptors and the services behind every RPC."""
