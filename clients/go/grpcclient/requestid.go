package grpcclient

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The server returns the request id as `x-request-id` metadata. These interceptors keep it on
// failed calls' errors, where AsAPIError and RequestID find it; the errors still carry their
// gRPC status (status.FromError, status.Code work as usual).

const requestIDKey = "x-request-id"

type callError struct {
	err       error
	requestID string
}

func (e *callError) Error() string              { return e.err.Error() }
func (e *callError) Unwrap() error              { return e.err }
func (e *callError) GRPCStatus() *status.Status { return status.Convert(e.err) }
func (e *callError) Is(target error) bool       { return errors.Is(e.err, target) }
func withRequestID(err error, md ...metadata.MD) error {
	for _, m := range md {
		if v := m.Get(requestIDKey); len(v) > 0 && v[0] != "" {
			return &callError{err: err, requestID: v[0]}
		}
	}
	return err
}

// RequestID returns the server's request id carried by an error from a Client call, or "".
func RequestID(err error) string {
	var ce *callError
	if errors.As(err, &ce) {
		return ce.requestID
	}
	return ""
}

func unaryRequestID(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var header, trailer metadata.MD
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&header), grpc.Trailer(&trailer))...)
	if err != nil {
		return withRequestID(err, trailer, header)
	}
	return nil
}

func streamRequestID(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &requestIDStream{ClientStream: s}, nil
}

type requestIDStream struct{ grpc.ClientStream }

func (s *requestIDStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	header, _ := s.ClientStream.Header()
	return withRequestID(err, s.ClientStream.Trailer(), header)
}
