// Package agent is the host side of etcdplay: the same binary, started by the
// controller as `etcdplay agent` in one SSH session per host, runs the
// host-side modules and answers over the session's stdin and stdout.
//
// # Wire protocol (version 1)
//
// Newline-delimited JSON in both directions: every message is one JSON
// object followed by "\n". The controller writes Requests to the agent's
// stdin; the agent writes Responses to its stdout. Nothing else is ever
// written to the agent's stdout (Main points fd 1 at stderr before serving,
// so a stray print in a module or a child process cannot corrupt the
// stream). Numbers in Args, Vars and Result.Data keep their integer type
// across the wire (see Normalize).
//
// Requests carry an ID chosen by the controller, unique per session. Every
// request except "cancel" gets exactly one final Response with the same ID;
// requests run concurrently, so responses may come back in any order.
//
//	Op        fields used                        final Response
//	hello     Version                            Facts, or Error on a version mismatch
//	vars      Vars                               empty (sets the default Vars of later runs)
//	run       Module Args Check Host Vars Notified  Result (never Error for module failures)
//	copy      Copy                               empty, or Error
//	cancel    Cancel (the ID of a running request)  none
//	shutdown  -                                  empty, after in-flight requests finished
//
// Before the final Response of a "run", the agent may send any number of
// progress Responses for the same ID with only Log set; they carry a line
// from the module's Env.Logf.
//
// A module error or panic is a Result with Status "failed" and the error in
// Msg; Response.Error is reserved for protocol-level failures (unknown op,
// bad request, version mismatch). On end of input the agent cancels the
// requests still running, waits for them and exits.
package agent
