# LANrage — every job is one make target. See README.md.
SHELL := /bin/bash
SWIFT ?= swift
# Debian packages the build, the tests and the lab need.
DEB_PACKAGES := libnl-3-dev libnl-genl-3-dev libsodium-dev pkg-config graphviz nftables iproute2 \
	wireguard-tools wireguard-go socat conntrack coturn stun-client iputils-ping xz-utils binutils bc time libcap2-bin \
	libstdc++-12-dev
# libstdc++ (the Swift runtime's C++ library) is linked statically too: routers seldom ship
# libstdc++.so, and resolving its dynamic symbols costs ~750 KiB of resident memory. lld takes the
# first libstdc++ on its search path, and this directory holds only the archive (libstdc++-12-dev).
STATIC_CXX_DIR := $(CURDIR)/.build/static-cxx
$(shell archive=$$(gcc -print-file-name=libstdc++.a 2>/dev/null); [ -f "$$archive" ] && mkdir -p $(STATIC_CXX_DIR) && ln -sfn "$$archive" $(STATIC_CXX_DIR)/libstdc++.a)
# The dependencies (swift-log, swift-collections) compiled like the shipped modules in Package.swift:
# a section per function, unused public ones droppable (-94 KB; see Package.swift).
RELEASE_FLAGS := -c release --static-swift-stdlib -Xswiftc -Xfrontend -Xswiftc -function-sections -Xswiftc -Xfrontend -Xswiftc -internalize-at-link \
	-Xlinker -L$(STATIC_CXX_DIR)
RELEASE_BIN := .build/release/lanrage
# The stripped release binary may not exceed this: 8 MiB (megabytes as `ls -lh` and `du -h` count).
SIZE_BUDGET := 8388608
# make test-kernel: Debian's kernel under qemu with a static busybox initramfs (the kernel itself is
# fetched with apt-get download into .build/test-kernel, never installed).
DEB_PACKAGES += qemu-system-x86 busybox-static cpio

.PHONY: all build release static size-static service-files deps test unit-tests footprint bench size charts clean fuzz bench-stun lab-bench order-file demo test-kernel kernel-tests bench-wg \
	fuzz-stun fuzz-control fuzz-relay fuzz-client fuzz-punch fuzz-relay-client fuzz-state bench-relay bench-control

all: build

## deps: install missing Debian packages (as root), or say exactly what is missing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:" $$missing; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing Debian packages; as root run: apt-get install" $$missing; exit 1; \
		fi; \
	fi

build:
	$(SWIFT) build

## release: the shipped binary, static Swift stdlib.
release:
	$(SWIFT) build $(RELEASE_FLAGS) --product lanrage

## static: a fully static lanrage (glibc -static-executable; libnl and libsodium from their .a files, which
## the linker picks in static mode), stripped at .build-static/lanrage-static: runs on any x86-64 Linux with
## no library installed. Not part of make test (a second release build). The linker warns that libnl's unused
## helpers and the Swift runtime refer to getaddrinfo, getprotobyname and dlopen; size-static checks that
## nothing reachable calls an NSS function.
STATIC_BUILD := .build-static
STATIC_BIN := $(STATIC_BUILD)/lanrage-static
static:
	$(SWIFT) build --scratch-path $(STATIC_BUILD) $(RELEASE_FLAGS) -Xswiftc -static-executable --product lanrage
	strip -o $(STATIC_BIN) $(STATIC_BUILD)/release/lanrage
	@ls -l $(STATIC_BIN)

## size-static: the release binary beside the static one (size, idle RSS, threads), and checks of the static one.
size-static: release static
	Tests/Scripts/footprint-static.sh $(RELEASE_BIN) $(STATIC_BUILD)/release/lanrage

## service-files: docs/service/ (systemd units, OpenWrt procd script, example agent.conf) checked: systemd-analyze
## verify, sh/dash/busybox sh -n, required settings, and every subcommand and option they run in lanrage's --help.
service-files:
	$(SWIFT) build --product lanrage
	Tests/Scripts/check-service-files.sh .build/debug/lanrage

## test: everything — unit and lab tests (network namespaces need root), the checked-in charts,
## and the footprint budget of the release binary.
test: deps unit-tests service-files footprint kernel-tests
	@echo "make test: all passed"

unit-tests:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

## test-kernel: the netlink backend against the real wireguard.ko, in Debian's kernel under qemu (KVM or TCG).
test-kernel:
	RELEASE_FLAGS="$(RELEASE_FLAGS)" Tests/Scripts/test-kernel/run.sh

## kernel-tests: test-kernel as part of make test — prints a framed SKIPPED line with the reason when it cannot run.
kernel-tests:
	RELEASE_FLAGS="$(RELEASE_FLAGS)" SKIP_OK=1 Tests/Scripts/test-kernel/run.sh

## bench-wg: apply and read back 1,000 peers through the UAPI backend vs wg set / wg show dump (root,
## wireguard-go), then the same through the netlink backend inside the test VM.
bench-wg:
	RELEASE_FLAGS="$(RELEASE_FLAGS)" Tests/Scripts/bench-wg.sh
	RELEASE_FLAGS="$(RELEASE_FLAGS)" BENCH=1 SKIP_OK=1 Tests/Scripts/test-kernel/run.sh

## footprint: the release binary keeps to the dependency and size budget (fails otherwise).
footprint: release
	Tests/Scripts/footprint.sh $(RELEASE_BIN) $(SIZE_BUDGET)

## size: build release and report size, compressed size and RSS beside the budget, then the static build beside it.
size: footprint size-static

## bench: in-process benchmarks (package-benchmark, release), WireGuard apply/read-back, the footprint.
bench: deps bench-wg
	$(SWIFT) package --allow-writing-to-package-directory benchmark
	$(MAKE) --no-print-directory footprint size-static

## charts: regenerate StateCharts/*.dot and *.svg from the code.
CHARTS := peer detection registration
charts:
	$(SWIFT) build --product lanrage
	@for chart in $(CHARTS); do \
		.build/debug/lanrage chart $$chart > StateCharts/$$chart.dot && \
		dot -Tsvg StateCharts/$$chart.dot > StateCharts/$$chart.svg && echo "StateCharts/$$chart.{dot,svg}"; \
	done

## fuzz: libFuzzer (ASan) on everything the agent and the servers read from the network, and on the control
## server's state file: each target FUZZ_RUNS executions over FUZZ_JOBS processes, from its seeds in
## Tests/Fuzz/seeds-NAME (STUN's in Tests/Fuzz/seeds). fuzz-NAME runs one target:
##   stun (decoder, server), control (server decoder and core), relay (relay decoders and tokens),
##   client (what a member does with the control server's datagrams), punch (punch messages, sessions
##   and driver), relay-client (relay answers as the agent takes them), state (state file and restore).
## The targets reach internals with @testable import: the modules are built with -enable-testing.
FUZZ_RUNS ?= 10000000
FUZZ_JOBS ?= 2
FUZZ_NAMES := stun control relay client punch relay-client state
FUZZ_BUILD := --scratch-path .build-fuzz -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -enable-testing
fuzz: $(addprefix fuzz-,$(FUZZ_NAMES))

## bench-stun: STUN encode/decode throughput and allocations (package-benchmark).
bench-stun:
	$(SWIFT) package --allow-writing-to-package-directory benchmark --target STUNBenchmarks

$(addprefix fuzz-,$(FUZZ_NAMES)): fuzz-%:
	target=$$(case $* in stun) echo STUNFuzz;; control) echo ControlFuzz;; relay) echo RelayFuzz;; client) echo ClientFuzz;; \
		punch) echo PunchFuzz;; relay-client) echo RelayClientFuzz;; state) echo StateFuzz;; esac); \
	seeds=$$([ $* = stun ] && echo Tests/Fuzz/seeds || echo Tests/Fuzz/seeds-$*); \
	$(SWIFT) build $(FUZZ_BUILD) --product $$target && \
	NAME=$* CORPUS=.build-fuzz/corpus-$* SEEDS=$$seeds Tests/Fuzz/run.sh .build-fuzz/release/$$target $(FUZZ_RUNS) $(FUZZ_JOBS)

## bench-relay: relay forwarding rate vs socat on loopback, one core each (release build).
## bench-control: control server registrations/s and memory with 10,000 members (release build).
bench: bench-relay bench-control
bench-relay bench-control: bench-%:
	$(SWIFT) build $(RELEASE_FLAGS) --product lanrage
	$(SWIFT) build $(RELEASE_FLAGS) --product RendezvousBench
	taskset -c 1 .build/release/RendezvousBench $* $(RELEASE_BIN)

clean:
	rm -rf .build .build-fuzz .build-static

## lab-bench: NAT lab benchmarks (root): time to a pinned endpoint per NAT pair, LANRAGE_LAB_RUNS runs each;
## then the agent beside Nebula (Tests/AgentLabBench): time to the first ping across the overlay per
## pair of site kinds, memory with 1 and 50 peers, CPU over an idle minute (LANRAGE_LAB_IDLE=0 skips it).
LANRAGE_LAB_IDLE ?= 1
lab-bench: DEB_PACKAGES += nebula
lab-bench: deps
	$(SWIFT) build --build-tests
	LANRAGE_LAB_BENCH=1 $(SWIFT) test --skip-build --filter PunchMatrixBenchmark 2>&1 | grep -E 'LAB-BENCH|✘|Test run'
	$(SWIFT) build --product AgentLabBench
	$(SWIFT) build $(RELEASE_FLAGS) --product lanrage
	LANRAGE_LAB_IDLE=$(LANRAGE_LAB_IDLE) LANRAGE_BIN=$(RELEASE_BIN) .build/debug/AgentLabBench

## order-file: regenerate the release link's code order (Package.swift; README, "Footprint") from a lab
## run with node 0's agent under callgrind (root, ~3 min). A stale list costs resident memory, nothing else.
ORDER_FILE := Sources/lanrage/lanrage.order
order-file: DEB_PACKAGES += valgrind
order-file: deps
	$(SWIFT) build --product AgentLabBench
	RELEASE_FLAGS="$(RELEASE_FLAGS)" Tests/Scripts/order-file.sh $(ORDER_FILE) .build/debug/AgentLabBench
	rm -f $(RELEASE_BIN)
	$(SWIFT) build $(RELEASE_FLAGS) --product lanrage

## demo: the main job — two members behind NATs in a lab of namespaces: STUN on the WireGuard port,
## a coordinated punch, WireGuard on the pinned endpoints, a ping across the overlay (root).
demo: deps
	$(SWIFT) build --product lanrage
	$(SWIFT) build --product LANrageDemo
	.build/debug/LANrageDemo
