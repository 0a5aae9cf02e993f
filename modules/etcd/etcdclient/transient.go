package etcdclient

import (
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// proposalDropped is raft's ErrProposalDropped as a client receives it:
// etcd does not map it to a gRPC code, so it arrives as codes.Unknown
// with this text. A leader drops proposals while it hands leadership over
// (a rolling restart's transfer, an operator's move-leader) and while no
// leader is known.
const proposalDropped = "raft proposal dropped"

// Transient reports whether err says the cluster is between two leaders
// or briefly overloaded rather than answering the request: an election, a
// leadership transfer, a member restarting, a request that timed out
// waiting for raft. The same request a moment later is likely to
// succeed, so a caller that waits anyway (for a lock, for health) retries
// it instead of failing the run. A request that timed out may still have
// been applied: retry only what is safe to repeat.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, rpctypes.ErrTooManyRequests) {
		return true
	}
	// status.FromError would give a wrapped status the whole chain's
	// text as its message: unwrap to the status itself.
	var code codes.Code
	var msg string
	var ee rpctypes.EtcdError
	var gs interface{ GRPCStatus() *status.Status }
	switch {
	case errors.As(err, &ee):
		code, msg = ee.Code(), ee.Error()
	case errors.As(err, &gs):
		code, msg = gs.GRPCStatus().Code(), gs.GRPCStatus().Message()
	default:
		return false
	}
	switch code {
	case codes.Unavailable:
		// etcd's "no leader", "leader changed", "request timed out
		// (due to ...)", "unhealthy cluster", and a member gRPC cannot
		// reach now.
		return true
	case codes.Unknown:
		return msg == proposalDropped
	}
	return false
}

func isUnavailable(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable
}
