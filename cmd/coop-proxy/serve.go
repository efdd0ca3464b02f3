package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/server"
)

// runServe runs the proxy until ctx ends (SIGINT or SIGTERM). A second
// signal during the drain exits at once, with the log flushed.
func runServe(ctx context.Context, inv *invocation) error {
	s := inv.settings
	// SIGHUP reloads once the server watches for it; until then it must not
	// end the process (its default action), as a reload at start would.
	// (Windows never sends it: nothing to ignore there.)
	signal.Ignore(syscall.SIGHUP)
	lg := server.NewLogger(os.Stderr, s.LogFormat, s.LogLevel)
	log, flush := lg.Log, lg.Flush
	defer flush()
	srv, err := server.New(s, server.Options{Log: log, Level: lg.Level, Requests: lg.Requests, Reread: inv.reread})
	if err == nil {
		go exitOnSecondSignal(ctx, log, flush)
		err = srv.Run(ctx)
	}
	if err != nil {
		log.Error("coop-proxy stopped", zap.Error(err))
	}
	return err
}

// exitOnSecondSignal waits for ctx to end (the first signal), then exits
// the process at once on the next one.
func exitOnSecondSignal(ctx context.Context, log *zap.Logger, flush func()) {
	<-ctx.Done()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	s := <-sig
	log.Error("second signal: exiting at once, without waiting for in-flight requests", zap.Stringer("signal", s))
	flush()
	os.Exit(1)
}
