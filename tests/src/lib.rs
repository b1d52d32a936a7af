//! Helpers shared by the end-to-end tests: spawning the real binaries and
//! talking to them over real sockets.
