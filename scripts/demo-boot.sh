#!/usr/bin/env bash
# Boots a deployed disk image once under QEMU (TCG, SeaBIOS, no KVM needed) and reports
# which image came up: the test images print BOOTED-IMAGE-<NAME> on the serial console
# and power off.
#   usage: scripts/demo-boot.sh DISK.img [SERIAL.log]
set -euo pipefail
img=$1
log=${2:-${img%.img}-serial.log}
rm -f "$log"
start=$(date +%s)
timeout 600 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 1 -m 512 \
  -display none -no-reboot -serial "file:$log" \
  -drive "file=$img,format=raw,if=virtio"
marker=$(tr -d '\r' < "$log" | grep -ao 'BOOTED-IMAGE-[A-Z0-9]* root=[^ ]* uptime=[0-9.]*' | head -1 || true)
if [ -z "$marker" ]; then
  echo "the disk did not boot into a test image; serial log: $log" >&2
  exit 1
fi
echo "booted in $(( $(date +%s) - start )) s (firmware, grub, kernel, init under TCG): $marker"
echo "serial log: $log"
