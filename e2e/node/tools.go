//go:build tools

// Package node pins the container runtime that scripts/cluster.sh builds for the end-to-end node
// (containerd 2.x, its runc shim and ctr), so that `go mod tidy` keeps their packages in go.sum.
package node

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
