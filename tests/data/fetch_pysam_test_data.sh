#!/bin/sh
# Installs Debian's python-pysam-tests, whose real BAM + FASTA (ex1.bam.gz, ex1.fa) are read by
# tests/data/test_real_files.py. Needs apt-get and root; elsewhere it says so and exits 0, and that
# test skips with the reason. Safe to run again: it does nothing once the files are there.
DATA=/usr/share/doc/python-pysam/tests/pysam_data
if [ -f "$DATA/ex1.bam.gz" ] && [ -f "$DATA/ex1.fa" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "fetch_pysam_test_data: needs apt-get as root; the real-BAM pileup test will be skipped" >&2
  exit 0
fi
apt-get install -y --no-install-recommends python-pysam-tests >/dev/null 2>&1 \
  || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends python-pysam-tests >/dev/null 2>&1; } \
  || echo "fetch_pysam_test_data: could not install python-pysam-tests; the real-BAM pileup test will be skipped" >&2
exit 0
