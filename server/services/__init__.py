"""gRPC service implementations, one module per endpoint family."""
