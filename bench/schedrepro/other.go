//go:build !linux

package main

import (
	"errors"
	"net"
	"time"
)

var errLinuxOnly = errors.New("this mode needs Linux (epoll)")

func startEpoll(string, time.Duration, bool) (net.Addr, error) { return nil, errLinuxOnly }
func startDispatch(string, time.Duration) (net.Addr, error)    { return nil, errLinuxOnly }
