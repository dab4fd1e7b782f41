"""Accelerator topologies by name: how many JAX devices, how many hosts, how much memory each.

    v4-128, v5p-64       TPU slices named as Cloud TPU names them: the number counts TensorCores,
                         two per chip, and JAX sees one device per chip (megacore)
    v5e-256, v5litepod-16  TPU v5e slices: the number counts chips (one TensorCore each)
    8xH100, 2x8xH100     GPU nodes: [nodes x] GPUs per node x kind (H100, H200, A100)

Memory per device is the vendor's figure (Cloud TPU docs: v4 32 GiB, v5e 16 GB, v5p 95 GB; NVIDIA:
H100 SXM 80 GB, H200 141 GB, A100 80 GB). Hosts: v4 and v5p have 4 chips per host, v5e slices
beyond 8 chips 8 per host, GPU nodes one host each.
"""

from __future__ import annotations

import dataclasses
import re

GB, GiB = 10**9, 2**30


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str
  accelerator: str
  num_devices: int
  num_hosts: int
  device_memory: int  # bytes

  @property
  def devices_per_host(self) -> int:
    return self.num_devices // self.num_hosts

  @property
  def is_gpu(self) -> bool:
    return self.accelerator in _GPUS


# name -> (accelerator, TensorCores per chip (0: the number counts chips), bytes, chips per host)
_TPUS = {
    "v4": ("TPU v4", 2, 32 * GiB, 4),
    "v5p": ("TPU v5p", 2, 95 * GB, 4),
    "v5e": ("TPU v5e", 0, 16 * GB, 8),
    "v5litepod": ("TPU v5e", 0, 16 * GB, 8),
}
_GPUS = {"H100": 80 * GB, "H200": 141 * GB, "A100": 80 * GB}

EXAMPLES = "v5p-64, v4-128, v5e-256, 8xH200, 2x8xH100"


def parse(name: str) -> Topology:
  """A topology from its name; see the module docstring for the forms."""
  tpu = re.fullmatch(r"(v4|v5p|v5e|v5litepod)-(\d+)", name.strip())
  if tpu:
    accelerator, cores_per_chip, memory, chips_per_host = _TPUS[tpu.group(1)]
    count = int(tpu.group(2))
    if cores_per_chip and count % cores_per_chip:
      raise ValueError(f"topology {name!r}: {tpu.group(1)} slices count TensorCores, "
                       f"{cores_per_chip} per chip; {count} is not a multiple")
    chips = count // cores_per_chip if cores_per_chip else count
    hosts = max(1, chips // chips_per_host)
    if chips > chips_per_host and chips % chips_per_host:
      raise ValueError(f"topology {name!r}: {chips} chips do not fill hosts of {chips_per_host}")
    return Topology(name, accelerator, chips, hosts, memory)
  gpu = re.fullmatch(r"(?:(\d+)x)?(\d+)x(H100|H200|A100)", name.strip(), re.IGNORECASE)
  if gpu:
    nodes, per_node, kind = int(gpu.group(1) or 1), int(gpu.group(2)), gpu.group(3).upper()
    return Topology(name, kind, nodes * per_node, nodes, _GPUS[kind])
  raise ValueError(f"unknown topology {name!r}; examples: {EXAMPLES}")
