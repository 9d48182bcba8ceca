# The two commands a new user needs are `make demo` and `make test` (see README.md).
GO ?= ./scripts/go
BIN := bin/provisioner
DEMO_SPEC ?= examples/demo.json

.PHONY: all build test unit demo bench lint clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/provisioner

# Every test layer that exists: unit and golden tests everywhere, loop-device tests when
# run as root (CI runs as root).
# internal/arch's test also checks gofmt and the package import rules.
test:
	./scripts/deps.sh test
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# Unit and golden tests only: no root, no loop devices.
unit:
	$(GO) test -count=1 -short ./...

# The main job on a disk-image file: build two small bootable images (a Debian cloud
# kernel and busybox, cached), deploy the demo spec onto a new 2 GiB out/demo-disk.img
# (GPT, filesystems, both images, one grub for BIOS and UEFI, boot-info.json), list the
# boot menu, then boot the disk once in QEMU and show the default image coming up.
demo: build
	./scripts/deps.sh demo
	mkdir -p out
	rm -f out/demo-disk.img
	$(GO) run ./cmd/testimages -out out/images a b
	$(BIN) validate $(DEMO_SPEC)
	$(BIN) deploy $(DEMO_SPEC) --device vda=out/demo-disk.img --size vda=2GiB --seed demo --boot-info out/boot-info.json
	$(BIN) list --device out/demo-disk.img
	./scripts/demo-boot.sh out/demo-disk.img

# Micro-benchmarks (spec loading, planning), then the deploy benchmark: >= 1 GiB rootfs
# over HTTP, ours against curl | zstd -dc | tar -x (and gzip), one run each (root).
bench:
	./scripts/deps.sh bench
	$(GO) test -run '^$$' -bench . -benchmem ./schema/ ./partition/
	$(GO) test -run '^$$' -bench DeployVsPipeline -benchtime 1x -timeout 60m -v ./internal/engine/

lint:
	$(GO) vet ./...
	$(GO) test -count=1 ./internal/arch/

clean:
	rm -rf bin out
