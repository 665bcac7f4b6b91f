package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/h1"
)

// Outcome is what one try against a backend came to.
type Outcome = backend.Outcome

// The outcomes of a try, in the SPEC's metric words.
const (
	OutcomeOK           = backend.OutcomeOK
	OutcomeHTTPError    = backend.OutcomeHTTPError
	OutcomeConnectError = backend.OutcomeConnectError
	OutcomeTimeout      = backend.OutcomeTimeout
	OutcomeReset        = backend.OutcomeReset
)

// Error words of the SPEC, as sent in error bodies, counted in
// sluice_errors_total and written to the access log.
const (
	ErrBadRequest       = "bad_request"
	ErrNoRoute          = "no_route"
	ErrMethodNotAllowed = "method_not_allowed"
	ErrClientTimeout    = "client_timeout"
	ErrRequestTooLarge  = "request_too_large"
	ErrHeadersTooLarge  = "headers_too_large"
	ErrUpstream         = "upstream_error"
	ErrResponseTooLarge = "response_too_large"
	ErrNoHealthyBackend = "no_healthy_backend"
	ErrRetryBudget      = "retry_budget_exhausted"
	ErrUpstreamTimeout  = "upstream_timeout"
	ErrClientDisconnect = "client_disconnect"
)

// clientError is a failure on the client's side of the exchange: a body that
// is malformed, too slow, too large, or a client that went away. It is never
// the backend's fault.
type clientError struct {
	word string // one of the error words
	err  error
}

func (e *clientError) Error() string { return e.word + ": " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// errBodyTooLarge is a request body over the route's limit.
var errBodyTooLarge = errors.New("request body over the limit")

// errResponseTooLarge is a response body over the route's limit.
var errResponseTooLarge = errors.New("response body over the limit")

// classifyClientRead turns an error from reading the client's body into a
// clientError.
func classifyClientRead(err error) *clientError {
	var ce *clientError
	if errors.As(err, &ce) {
		return ce
	}
	switch {
	case errors.Is(err, errBodyTooLarge):
		return &clientError{ErrRequestTooLarge, err}
	case isTimeout(err):
		return &clientError{ErrClientTimeout, err}
	case errors.Is(err, h1.ErrBadChunk):
		return &clientError{ErrBadRequest, err}
	}
	if isDisconnect(err) {
		return &clientError{ErrClientDisconnect, err}
	}
	return &clientError{ErrBadRequest, err}
}

// isTimeout reports a deadline that passed.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isDisconnect reports a peer that closed or reset the connection.
func isDisconnect(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// upstreamOutcome classes an error of a try that got no response headers.
func upstreamOutcome(err error) Outcome {
	var de *dialError
	switch {
	case errors.As(err, &de):
		return OutcomeConnectError
	case isTimeout(err):
		return OutcomeTimeout
	default:
		return OutcomeReset
	}
}

// isClientErr reports a failure on the client's side.
func isClientErr(err error) bool {
	var ce *clientError
	return errors.As(err, &ce)
}
