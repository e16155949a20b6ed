"""The composition root: builds the gRPC server and the REST bridge on one event loop, and the CLI."""
