# The two commands a new user needs are `make demo` and `make test` (see README.md).
GO ?= ./scripts/go
BIN := bin/provisioner
DEMO_SPEC ?= examples/demo.json

.PHONY: all build test unit demo bench lint clean ramdisk

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/provisioner

# Every test layer: unit and golden tests everywhere, loop-device tests when run as root
# (CI runs as root), then the QEMU integration suite (build tag integration: it builds the
# deploy ramdisk once and boots it and the deployed disks under TCG).
# internal/arch's test also checks gofmt and the package import rules. The short modes
# of the deploy, raw-image and reload benchmarks (TestDeployVsPipelineShort,
# TestRawVsDdAndBmaptoolShort, TestReloadVsPipelineShort) run among the unit tests, with
# the tools of `make bench`.
test:
	./scripts/deps.sh test
	./scripts/deps.sh bench
	./scripts/deps.sh ramdisk
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -tags integration -timeout 40m -v ./integration/

# Unit and golden tests only: no root, no loop devices.
unit:
	$(GO) test -count=1 -short ./...

# The main job, end to end on this machine: build the deploy ramdisk (out/vmlinuz,
# out/initramfs.cpio.zst) and two small bootable images, boot the ramdisk in QEMU with a
# blank out/demo-disk.img and provisioner.spec pointing at examples/demo.json (served with
# the images by the demo, which also receives the callback's events), print the boot-info
# of the final event, then boot the disk once and show the default image coming up.
demo: build
	./scripts/deps.sh demo
	./scripts/deps.sh ramdisk
	$(GO) run ./cmd/demo -out out -spec examples/demo.json -go $(CURDIR)/scripts/go
	$(BIN) list --device out/demo-disk.img

# Micro-benchmarks (spec loading, planning), then in one run the deploy, the raw-image and
# the reload benchmarks, one round each (root): a >= 1 GiB tree over HTTP as tar.zst,
# tar.gz, tar.xz and tar.bz2, ours against curl | zstd -dc | tar -x (gzip -dc, xz -dc -T0,
# bzip2 -dc); a mostly empty 2 GiB ext4 image, raw and raw.zst, against dd and bmaptool
# copy; the reload of one root of a deployed disk image against mke2fs and the pipeline.
# Every tree is then checked; the table of all comparisons is printed at the end.
bench:
	./scripts/deps.sh bench
	$(GO) test -run '^$$' -bench . -benchmem ./schema/ ./partition/
	$(GO) test -run '^$$' -bench '(Deploy|Reload)VsPipeline|RawVsDdAndBmaptool' -benchtime 1x -timeout 90m -v ./internal/engine/

# The deploy ramdisk: out/vmlinuz and out/initramfs.cpio.zst (u-root's init, the
# provisioner, busybox, the tools it runs and the kernel modules it needs), built from
# Debian 12's kernel (apt-get download, cached) and this machine's tools.
# FLAVOUR=cloud-amd64 builds the VM kernel, which boots twice as fast under QEMU TCG.
FLAVOUR ?= amd64
ramdisk:
	./scripts/deps.sh ramdisk
	$(GO) run ./cmd/mkramdisk -flavour $(FLAVOUR) -out out -go ./scripts/go

lint:
	$(GO) vet ./...
	$(GO) test -count=1 ./internal/arch/

clean:
	rm -rf bin out
