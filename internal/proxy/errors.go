package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/h1"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/sluice-proxy/sluice/internal/upstream"
	"github.com/sluice-proxy/sluice/internal/wire"
)

// Outcome is what one try against a backend came to.
type Outcome = backend.Outcome

// The outcomes of a try, in the words of the outcome metric label.
const (
	OutcomeOK           = backend.OutcomeOK
	OutcomeHTTPError    = backend.OutcomeHTTPError
	OutcomeConnectError = backend.OutcomeConnectError
	OutcomeTimeout      = backend.OutcomeTimeout
	OutcomeReset        = backend.OutcomeReset
)

// The error words, as sent in error bodies, counted in sluice_errors_total
// and written to the access log: one closed set, the metrics package's.
const (
	ErrBadRequest       = metrics.ErrBadRequest
	ErrNoRoute          = metrics.ErrNoRoute
	ErrMethodNotAllowed = metrics.ErrMethodNotAllowed
	ErrClientTimeout    = metrics.ErrClientTimeout
	ErrRequestTooLarge  = metrics.ErrRequestTooLarge
	ErrHeadersTooLarge  = metrics.ErrHeadersTooLarge
	ErrUpstream         = metrics.ErrUpstream
	ErrResponseTooLarge = metrics.ErrResponseTooLarge
	ErrNoHealthyBackend = metrics.ErrNoHealthyBackend
	ErrRetryBudget      = metrics.ErrRetryBudget
	ErrUpstreamTimeout  = metrics.ErrUpstreamTimeout
	ErrClientDisconnect = metrics.ErrClientDisconnect
)

// clientError is a failure on the client's side of the exchange: a body that
// is malformed, too slow, too large, or a client that went away. It is never
// the backend's fault.
type clientError struct {
	word metrics.ErrorWord
	err  error
}

func (e *clientError) Error() string { return e.word.String() + ": " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// errBodyTooLarge is a request body over the route's limit.
var errBodyTooLarge = errors.New("request body over the limit")

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
	case wire.IsTimeout(err):
		return &clientError{ErrClientTimeout, err}
	case errors.Is(err, h1.ErrBadChunk):
		return &clientError{ErrBadRequest, err}
	}
	if isDisconnect(err) {
		return &clientError{ErrClientDisconnect, err}
	}
	return &clientError{ErrBadRequest, err}
}

// isDisconnect reports a peer that closed or reset the connection.
func isDisconnect(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// upstreamOutcome classes an error of a try that got no response headers.
func upstreamOutcome(err error) Outcome {
	var de *upstream.DialError
	switch {
	case errors.As(err, &de):
		return OutcomeConnectError
	case wire.IsTimeout(err):
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

// errClientGone is a client that closed its connection while its request
// waited on a backend.
var errClientGone = &clientError{ErrClientDisconnect, upstream.ErrClientGone}

// fromUpstream turns the upstream client's report that the client left into
// the client's failure; other errors stay as they are.
func fromUpstream(err error) error {
	if err == upstream.ErrClientGone {
		return errClientGone
	}
	return err
}
