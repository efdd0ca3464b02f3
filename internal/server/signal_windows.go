package server

import "os"

// notifyReload does nothing: Windows has no SIGHUP, and nothing can send a
// console process another signal that would mean "reload". A change to the
// configuration file or a secret file, which the watcher sees, is the way
// to reload there (watchReloads).
func notifyReload(chan<- os.Signal) {}
