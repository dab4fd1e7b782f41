import os
import sys

# Tests run on the host CPU; a few need several simulated devices and set this themselves in a
# subprocess. Keep XLA from grabbing every core's worth of threads per test worker.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
