# Set-up and everyday tasks. `make run` and `make test` are all a fresh
# machine needs (README.md).

CARGO        ?= cargo
FUZZ_SECONDS ?= 60
# Debian packages the test suite needs on a fresh machine (installed when
# missing): python3 and python3-venv (the /metrics format check's venv),
# mosquitto, mosquitto-clients and nats-server (peers of the benchmark tests),
# chromium (the status page test renders the page headless).
TEST_DEBS    ?= python3 python3-venv mosquitto mosquitto-clients nats-server chromium

.PHONY: run test test-js build lint fmt fuzz bench bench-million tune doc deps clean attack deb

run:
	$(CARGO) build --release --bin gateway
	@if [ -z "$$GATEWAY_JWT_SECRET" ]; then \
	  echo "GATEWAY_JWT_SECRET is not set: the gateway picks a random secret and refuses every client."; \
	  echo "For a first push: export GATEWAY_JWT_SECRET=\$$(openssl rand -hex 32) here and in another terminal, then make run again."; \
	else \
	  echo "First push, in another terminal with the same GATEWAY_JWT_SECRET:"; \
	  echo "  ./target/release/gateway sub --user alice &"; \
	  echo "  ./target/release/gateway push --user alice hello"; \
	  echo "  ./target/release/gateway stats"; \
	fi
	./target/release/gateway

build:
	$(CARGO) build --workspace --all-targets

# Python packages the tests need (the /metrics format check parses with
# prometheus_client's own text parser; the WebSocket listener is checked
# against the `websockets` client, the MQTT listener against paho-mqtt), in
# a venv under target/ that is made
# once and refreshed only when this list changes.
TEST_PY_VENV ?= target/pyenv
TEST_PY_PKGS ?= prometheus_client websockets==15.0.1 paho-mqtt==2.1.0

# `make deps` prints what it installs. Run as a non-root user with packages
# missing, it stops and names them (scripts/install-debs.sh); services the
# packages bring (mosquitto, nats-server) are installed but neither started
# nor enabled.
deps:
	@sh scripts/install-debs.sh $(TEST_DEBS)
	@stamp=$(TEST_PY_VENV)/.installed; \
	if [ "$$(cat $$stamp 2>/dev/null)" != "$(TEST_PY_PKGS)" ]; then \
	  echo "python venv $(TEST_PY_VENV): $(TEST_PY_PKGS)"; \
	  { test -x $(TEST_PY_VENV)/bin/python3 || python3 -m venv $(TEST_PY_VENV); } && \
	  $(TEST_PY_VENV)/bin/python3 -m pip install -q $(TEST_PY_PKGS) && \
	  echo "$(TEST_PY_PKGS)" > $$stamp; \
	fi

# The end-to-end behaviour tests run once per driver: every gateway they
# start takes E2E_DRIVER. The rest (benchmarks, packaging, the io_uring
# driver's direct-descriptor tables, the fallback test, which sets up its
# own) runs on io_uring only.
EPOLL_E2E := attack backends durable control_limits control_pipelining data_plane \
	hostile_clients idle_batching metrics_format push push_answer push_online \
	mqtt mqtt_paho resume route_cache startup_refusals tls websocket websocket_python
EPOLL_E2E_ARGS := -p e2e-tests $(foreach t,$(EPOLL_E2E),--test $(t))

# Builds everything (release binaries too: the end-to-end tests drive them),
# then runs every test of the workspace on the io_uring driver, and the
# end-to-end behaviour tests again on the epoll driver.
test: deps
	$(CARGO) build --workspace --all-targets
	$(CARGO) build --release --bins
	@if command -v cargo-nextest >/dev/null 2>&1; then \
	  E2E_DRIVER=io_uring $(CARGO) nextest run --workspace --no-fail-fast && \
	  echo "== the end-to-end behaviour tests again, on the epoll driver ==" && \
	  E2E_DRIVER=epoll $(CARGO) nextest run --no-fail-fast $(EPOLL_E2E_ARGS); \
	else \
	  E2E_DRIVER=io_uring $(CARGO) test --workspace --no-fail-fast && \
	  echo "== the end-to-end behaviour tests again, on the epoll driver ==" && \
	  E2E_DRIVER=epoll $(CARGO) test --no-fail-fast $(EPOLL_E2E_ARGS); \
	fi
	$(CARGO) test --workspace --doc
	$(MAKE) test-js

# clients/js's own tests, on Node's built-in test runner (no packages).
test-js:
	cd clients/js && node --test test/*.test.js

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

doc:
	$(CARGO) doc --workspace --no-deps

# Fuzzes one target of fuzz/ with libFuzzer for $(FUZZ_SECONDS) seconds (or
# until FUZZ_ARGS, e.g. -runs=10000000, says stop), then prints libFuzzer's
# final stats. Targets: wire_input (frame decoder and both session state
# machines), control_http (control listener request parser), backend_http
# (backend client response parser), jwt (HS256/RS256 token verification),
# store_recovery (the durable store's segment recovery), ws_handshake
# (WebSocket opening handshake parser), ws_frames (WebSocket client frame
# decoder), mqtt_decode (MQTT 3.1.1 packet decoder), mqtt_session (MQTT
# server session), resume_token (resume tokens from Hello.resume). Seeds are fuzz/seeds/$(FUZZ_TARGET)/. Works on a stable
# toolchain: cargo-fuzz with `--sanitizer none` needs no -Z flag. Installs
# cargo-fuzz when missing. Crashes land in fuzz/artifacts/$(FUZZ_TARGET)/.
FUZZ_TARGET  ?= wire_input
FUZZ_MAX_LEN ?= 4096
FUZZ_ARGS    ?=
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/$(FUZZ_TARGET)
	$(CARGO) fuzz run --sanitizer none $(FUZZ_TARGET) fuzz/corpus/$(FUZZ_TARGET) fuzz/seeds/$(FUZZ_TARGET) -- \
	  -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 $(FUZZ_ARGS)

# Side-by-side benchmark (docs/BENCHMARKS.md): gateway vs mosquitto vs
# nats-server on connect (memory per connection, connect rate) and fanout
# (deliveries/s, completion p99), each beside the floor of the same run, at
# the largest counts the host allows; medians of BENCH_RUNS rounds. Writes
# the table into docs/BENCHMARKS.md and the report to $(BENCH_HTML).
BENCH_RUNS   ?= 3
BENCH_HTML   ?= target/bench/report.html
BENCH_JSON   ?= target/bench/report.json
bench:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; }
	@command -v nats-server >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; }
	$(CARGO) build --release --bin gateway --bin gateway-bench
	mkdir -p $(dir $(BENCH_HTML)) $(dir $(BENCH_JSON))
	BIN=$${CARGO_TARGET_DIR:-target}/release; \
	timeout 1500 $$BIN/gateway-bench suite --gateway-bin $$BIN/gateway --runs $(BENCH_RUNS) \
	  --md docs/BENCHMARKS.md --html $(BENCH_HTML) --json $(BENCH_JSON)

# A million connections on this box (docs/BENCHMARKS.md, "A million
# connections"): one release gateway on 52 shards, then gateway-bench
# connect (1M at 10,000/s, a 300 s idle hold at 300 s heartbeats), one
# broadcast and 10 back-to-back broadcasts to 1M. Each run reconnects the
# million (about 110 s) and closing it takes about 100 s, so about 18 minutes
# on this 2-CPU box; capped at 25. Takes the whole box. Writes the table between the bench-million
# markers in docs/BENCHMARKS.md and the reports to target/bench/million-*.
bench-million:
	$(CARGO) build --release --bin gateway --bin gateway-bench
	WRITE_DOC=1 timeout --kill-after=30 1500 scripts/bench-million.sh

# The hostile-client suite at full size (docs/SECURITY.md): every attack
# against the release gateway, with memory before/peak/after, a healthy
# client's ping latency and strangers lost; exits non-zero if any case failed.
attack:
	$(CARGO) build --release --bin gateway --bin e2e-attack
	./target/release/e2e-attack

# Host check against TUNE_CONNS connections (docs/TUNING.md). Warnings (exit 1)
# do not fail make; blocking findings (exit 2) do.
TUNE_CONNS   ?= 100000
tune:
	$(CARGO) run --release --bin gateway-tune -- check --target-conns $(TUNE_CONNS) || [ $$? -eq 1 ]

# The Debian package (target/deb/gateway_VERSION_ARCH.deb): release binaries
# in /usr/bin, /etc/gateway/gateway.toml from `gateway config` (a conffile), a
# hardened systemd unit (DynamicUser, limits from `gateway-tune plan`), not
# enabled on install. dpkg-deb only: scripts/build-deb.sh says why.
deb:
	bash scripts/build-deb.sh

clean:
	$(CARGO) clean
