# LANrage — every job is one make target. See README.md.
SHELL := /bin/bash
SWIFT ?= swift
# Debian packages the build, the tests and the lab need.
DEB_PACKAGES := libnl-3-dev libnl-genl-3-dev libsodium-dev pkg-config graphviz nftables iproute2 \
	wireguard-tools wireguard-go socat conntrack coturn stun-client iputils-ping xz-utils binutils bc time libcap2-bin \
	libstdc++-12-dev python3 faketime dnsmasq-base miniupnpd-nftables
# libstdc++ (the Swift runtime's C++ library) is linked statically too: routers seldom ship
# libstdc++.so, and resolving its dynamic symbols costs ~750 KiB of resident memory. lld takes the
# first libstdc++ on its search path, and this directory holds only the archive (libstdc++-12-dev).
STATIC_CXX_DIR := $(CURDIR)/.build/static-cxx
$(shell archive=$$(gcc -print-file-name=libstdc++.a 2>/dev/null); [ -f "$$archive" ] && mkdir -p $(STATIC_CXX_DIR) && ln -sfn "$$archive" $(STATIC_CXX_DIR)/libstdc++.a)
# Every module compiled like the shipped ones in Package.swift: a section per function, unused
# public ones droppable (see Package.swift).
# The commit `lanrage version` names (empty outside a git checkout).
COMMIT := $(shell git describe --always --dirty --abbrev=12 2>/dev/null)
RELEASE_FLAGS := -c release --static-swift-stdlib -Xcc -DLANRAGE_COMMIT='"$(COMMIT)"' -Xswiftc -Xfrontend -Xswiftc -function-sections -Xswiftc -Xfrontend -Xswiftc -internalize-at-link \
	-Xlinker -L$(STATIC_CXX_DIR)
RELEASE_BIN := .build/release/lanrage
# The stripped release binary may not exceed this: 8 MiB (megabytes as `ls -lh` and `du -h` count).
SIZE_BUDGET := 8388608
# make test-kernel: Debian's kernel under qemu with a static busybox initramfs (the kernel, and busybox for
# a foreign architecture, are fetched with apt-get download into .build/test-kernel/ARCH, never installed).
DEB_PACKAGES += qemu-system-x86 qemu-system-arm busybox-static cpio
# make deb-test: the Debian root the package is installed into.
DEB_PACKAGES += debootstrap
# make cross: the architectures of the shipped binaries.
CROSS_ARCHS := aarch64 armv7 x86_64

.PHONY: all build release static size-static service-files openwrt-package docs-check deps test unit-tests footprint bench size charts clean fuzz bench-stun lab-bench order-file demo test-kernel kernel-tests bench-wg \
	cross cross-deps cross-tests footprint-hosted deb deb-test $(addprefix cross-,$(CROSS_ARCHS)) \
	fuzz-stun fuzz-control fuzz-relay fuzz-client fuzz-punch fuzz-relay-client fuzz-state fuzz-dns fuzz-gateway bench-relay bench-control simulate

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

## release: the hosted build (Swift runtime, static stdlib; shared glibc, libnl, libsodium), which the
## tests and benchmarks run beside the shipped Embedded build.
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

## openwrt-package: packaging/openwrt/lanrage checked with stubs of rules.mk, package.mk, rc.common,
## procd, functions.sh and uci, in a busybox chroot, with the shipped x86_64 binary (root).
openwrt-package: cross
	Tests/Scripts/check-openwrt-package.sh .build/cross/x86_64/lanrage

## docs-check: the Markdown docs (README.md, BENCHMARKS.md, CHANGELOG.md, docs/*.md): links stay inside the
## repository and name files and headings that exist, README.md is at most 200 lines, every lanrage subcommand
## and option they show is in lanrage's --help, and every subcommand is in docs/CLI.md (python3).
docs-check:
	$(SWIFT) build --product lanrage
	Tests/Scripts/check-docs.sh .build/debug/lanrage

## test: everything — unit and lab tests (network namespaces need root), the checked-in charts, the service
## files and the docs, the cross builds under emulation, the OpenWrt package in a busybox chroot, the
## footprint of the shipped binaries, and the Debian package installed into Debian 12.
test: deps unit-tests service-files docs-check cross-tests openwrt-package footprint kernel-tests deb-test
	@echo "make test: all passed"

unit-tests:
	$(SWIFT) build --build-tests
	SWIFT_DETERMINISTIC_HASHING=1 $(SWIFT) test --skip-build

## test-kernel [ARCH=x86_64|aarch64]: the shipped build's netlink backend against the real wireguard.ko,
## in Debian's kernel for ARCH under qemu (KVM for the host's own architecture, else TCG).
ARCH ?= x86_64
test-kernel:
	ARCH=$(ARCH) Tests/Scripts/test-kernel/run.sh

## kernel-tests: test-kernel for x86_64 and aarch64 on the binaries of make cross, as part of make test —
## prints a framed SKIPPED line with the reason when one cannot run.
KERNEL_ARCHS := x86_64 aarch64
kernel-tests: cross
	@for arch in $(KERNEL_ARCHS); do \
		ARCH=$$arch LANRAGE_BIN=.build/cross/$$arch/lanrage SKIP_OK=1 Tests/Scripts/test-kernel/run.sh || exit 1; \
	done

## bench-wg: apply and read back 1,000 peers through the UAPI backend vs wg set / wg show dump (root,
## wireguard-go), then the same through the netlink backend inside the test VM.
bench-wg:
	RELEASE_FLAGS="$(RELEASE_FLAGS)" Tests/Scripts/bench-wg.sh
	BENCH=1 SKIP_OK=1 Tests/Scripts/test-kernel/run.sh

## deb [DEB_ARCH=amd64|arm64|armhf]: the Debian package of the shipped binary for that architecture
## (make cross: x86_64, aarch64, armv7) at .build/deb/lanrage_VERSION_DEB_ARCH.deb, with dpkg-deb from
## packaging/deb/ and docs/service/ (packaging/deb/build.sh).
DEB_ARCH ?= amd64
DEB_CROSS_ARCH = $(or $(patsubst $(DEB_ARCH):%,%,$(filter $(DEB_ARCH):%,amd64:x86_64 arm64:aarch64 armhf:armv7)),$(error DEB_ARCH=$(DEB_ARCH): amd64, arm64 or armhf))
DEB_VERSION := $(shell sed -n 's/^ *static let version = "\([^"]*\)"$$/\1/p' Sources/lanrage/VersionCommand.swift)
deb: cross-deps
	$(MAKE) --no-print-directory cross-$(DEB_CROSS_ARCH)
	packaging/deb/build.sh .build/cross/$(DEB_CROSS_ARCH)/lanrage $(DEB_ARCH) .build/deb

## deb-test: the amd64 package of make cross's x86_64 binary installed with dpkg into Debian 12
## (debootstrap --variant=minbase bookworm with wireguard-go, made once at DEB_ROOT), then its agent
## started from there in the NAT lab, registered and pinging a peer (root; DebPackageLabTests).
DEB_ROOT := .build/deb/root-bookworm
deb-test: deps cross
	packaging/deb/build.sh .build/cross/x86_64/lanrage amd64 .build/deb
	Tests/Scripts/deb-root.sh $(DEB_ROOT)
	$(SWIFT) build --build-tests
	LANRAGE_DEB=$(CURDIR)/.build/deb/lanrage_$(DEB_VERSION)_amd64.deb LANRAGE_DEB_ROOT=$(CURDIR)/$(DEB_ROOT) \
		$(SWIFT) test --skip-build --filter DebPackageLabTests 2>&1 | grep -E 'DEB-LAB|✘|Test run' ; [ $${PIPESTATUS[0]} = 0 ]

## footprint: the shipped binaries (make cross) keep under the size ceiling, static, one thread, no
## NSS calls (fails otherwise).
footprint: cross
	Tests/Scripts/footprint-cross.sh $(CROSS_CEILING) $(CROSS_ARCHS)

## footprint-hosted: the hosted release build against its own budget (dependencies, size, RSS).
footprint-hosted: release
	Tests/Scripts/footprint.sh $(RELEASE_BIN) $(SIZE_BUDGET)

## size: the shipped binaries, then the hosted release build and its fully static variant beside them.
size: footprint footprint-hosted size-static

## bench: in-process benchmarks (package-benchmark, release), WireGuard apply/read-back, the footprint.
bench: deps bench-wg
	$(SWIFT) package --allow-writing-to-package-directory benchmark
	$(MAKE) --no-print-directory size

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
##   and driver), relay-client (relay answers as the agent takes them), state (state file and restore),
##   dns (name servers' answers, resolv.conf and hosts as the resolver reads them), gateway (PCP, NAT-PMP
##   and UPnP-IGD answers as the port-mapping machine takes them).
## The targets reach internals with @testable import: the modules are built with -enable-testing.
FUZZ_RUNS ?= 10000000
FUZZ_JOBS ?= 2
FUZZ_NAMES := stun control relay client punch relay-client state dns gateway
FUZZ_BUILD := --scratch-path .build-fuzz -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -enable-testing
fuzz: $(addprefix fuzz-,$(FUZZ_NAMES))

$(addprefix fuzz-,$(FUZZ_NAMES)): fuzz-%:
	target=$$(case $* in stun) echo STUNFuzz;; control) echo ControlFuzz;; relay) echo RelayFuzz;; client) echo ClientFuzz;; \
		punch) echo PunchFuzz;; relay-client) echo RelayClientFuzz;; state) echo StateFuzz;; dns) echo DNSFuzz;; \
		gateway) echo GatewayFuzz;; esac); \
	seeds=$$([ $* = stun ] && echo Tests/Fuzz/seeds || echo Tests/Fuzz/seeds-$*); \
	$(SWIFT) build $(FUZZ_BUILD) --product $$target && \
	NAME=$* CORPUS=.build-fuzz/corpus-$* SEEDS=$$seeds Tests/Fuzz/run.sh .build-fuzz/release/$$target $(FUZZ_RUNS) $(FUZZ_JOBS)

## bench-stun: STUN encode/decode throughput and allocations (package-benchmark).
bench-stun:
	$(SWIFT) package --allow-writing-to-package-directory benchmark --target STUNBenchmarks

## bench-relay: relay forwarding rate vs socat on loopback, one core each (release build).
## bench-control: control server registrations/s and memory with 10,000 members (release build).
bench: bench-relay bench-control
bench-relay bench-control: bench-%:
	$(SWIFT) build $(RELEASE_FLAGS) --product lanrage
	$(SWIFT) build $(RELEASE_FLAGS) --product RendezvousBench
	taskset -c 1 .build/release/RendezvousBench $* $(RELEASE_BIN)

## simulate [RUNS=N] [FIRST=N] [SEED=N] [PARTY=N] [SCENARIO=connection]: the seeded punch scenarios FIRST…
## (default 10,000 from 0) on the simulated network of NATs, in virtual time (release build): per cell, how
## many went direct, in which round, how fast; every run that broke a property with the command that
## replays it. With SEED, that one scenario and its whole trace. With PARTY=20, parties of 20 members
## instead (RUNS default 20). With SCENARIO=connection, the connection scenarios (RUNS default 5,000):
## both members' peer charts and connections over a model of WireGuard, the real control and relay cores;
## with PARTY=20 as well, parties whose members all connect to one another, a fault mixed in.
simulate:
	$(SWIFT) build -c release --product Simulate
	SWIFT_DETERMINISTIC_HASHING=1 RUNS=$(RUNS) FIRST=$(FIRST) SEED=$(SEED) PARTY=$(PARTY) SCENARIO=$(SCENARIO) .build/release/Simulate

clean:
	rm -rf .build .build-fuzz .build-static

## cross: the shipped binaries — Embedded Swift, fully static, stripped — at .build/cross/ARCH/lanrage
## for aarch64, armv7 (soft-float, runs on armhf too) and x86_64, each with a `run` script beside it
## (qemu-user on ARM). Two architectures build at a time (one swiftc per module each).
SHIPPED_BIN := .build/cross/x86_64/lanrage
# The stripped shipped binaries may not exceed this: 2 MiB (megabytes as `ls -lh` counts them).
CROSS_CEILING := 2097152
CROSS_PACKAGES := gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabi libc6-dev-armel-cross musl-dev musl-dev:arm64 musl-dev:armel \
	binutils-aarch64-linux-gnu binutils-arm-linux-gnueabi qemu-user-static \
	libsodium-dev:arm64 libnl-3-dev:arm64 libnl-genl-3-dev:arm64 libsodium-dev:armel libnl-3-dev:armel libnl-genl-3-dev:armel
cross: cross-deps
	@mkdir -p .build
	$(MAKE) --no-print-directory -j2 $(addprefix cross-,$(CROSS_ARCHS))
$(addprefix cross-,$(CROSS_ARCHS)): cross-%:
	Tests/Scripts/cross.sh $* > .build/cross-$*.log 2>&1 || { tail -40 .build/cross-$*.log; exit 1; }
	@tail -1 .build/cross-$*.log

## cross-deps: the cross compilers, qemu-user and the ARM libraries (Debian multiarch arm64 and armel).
cross-deps:
	@for arch in arm64 armel; do \
		dpkg --print-foreign-architectures | grep -qx $$arch && continue; \
		if [ "$$(id -u)" = 0 ]; then dpkg --add-architecture $$arch; \
		else echo "as root run: dpkg --add-architecture $$arch"; exit 1; fi; \
	done
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(CROSS_PACKAGES)"

## cross-tests: each cross build under emulation against references (charts, wg's keys, a STUN client),
## then in the NAT lab: two agents of that architecture, restricted cone ↔ symmetric, direct, ping (root).
cross-tests: cross
	@for arch in $(CROSS_ARCHS); do Tests/Scripts/cross-check.sh $$arch || exit 1; done
	$(SWIFT) build --build-tests
	@for arch in $(CROSS_ARCHS); do \
		LANRAGE_CROSS_ARCH=$$arch LANRAGE_BIN=$(CURDIR)/.build/cross/$$arch/run $(SWIFT) test --skip-build --filter CrossBuildLabTests 2>&1 \
			| grep -E 'CROSS-LAB|✘|Test run' ; [ $${PIPESTATUS[0]} = 0 ] || exit 1; \
	done

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
	$(MAKE) --no-print-directory cross-x86_64
	LANRAGE_LAB_IDLE=$(LANRAGE_LAB_IDLE) LANRAGE_BIN=$(CURDIR)/$(SHIPPED_BIN) .build/debug/AgentLabBench

## order-file: regenerate the release link's code order (Package.swift; docs/DESIGN.md, "Footprint") from a lab
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
