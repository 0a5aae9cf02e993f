package etcdclient

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		// As CI saw it: a lock taken while a rolling restart handed
		// leadership over.
		{"proposal dropped", status.Error(codes.Unknown, "raft proposal dropped"), true},
		{"proposal dropped, wrapped", fmt.Errorf("operation lock: %w", status.Error(codes.Unknown, "raft proposal dropped")), true},
		{"no leader", rpctypes.ErrNoLeader, true},
		{"no leader, as gRPC sends it", rpctypes.ErrGRPCNoLeader, true},
		{"leader changed", rpctypes.ErrLeaderChanged, true},
		{"request timed out", rpctypes.ErrTimeout, true},
		{"timed out after leader failure", rpctypes.ErrTimeoutDueToLeaderFail, true},
		{"unhealthy cluster", rpctypes.ErrUnhealthy, true},
		{"too many requests", rpctypes.ErrTooManyRequests, true},
		{"member unreachable", status.Error(codes.Unavailable, "connection refused"), true},
		{"another unknown error", status.Error(codes.Unknown, "disk on fire"), false},
		{"no space", rpctypes.ErrNoSpace, false},
		{"permission denied", rpctypes.ErrPermissionDenied, false},
		{"lease not found", rpctypes.ErrLeaseNotFound, false},
		{"deadline", context.DeadlineExceeded, false},
		{"cancelled", context.Canceled, false},
		{"plain error", errors.New("raft proposal dropped"), false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
