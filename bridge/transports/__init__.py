"""How the bridge reaches the gRPC service: in process (``local``) or a grpc.aio channel."""
