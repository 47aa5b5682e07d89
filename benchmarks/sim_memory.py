"""Peak memory and time of a whole-network bit-wise simulation: ResNet-18 (CIFAR-10) at batch 256.

The issue asks that this simulates within 8 GB. The network is built in torch with random weights (no
data set needed: memory and time do not depend on the pixel values), converted for a lossy macro
(the AIMC template: 128 rows, 8-bit ADC, 2 input bits per cycle), calibrated on one batch, and run once
in ``simulate`` mode. Prints the peak resident memory of the process (ru_maxrss) and the wall time.

    .venv/bin/python benchmarks/sim_memory.py [--batch 256] [--noise 0]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse.accuracy.convert import convert  # noqa: E402
from dse.accuracy.layers import set_generator, set_mode  # noqa: E402
from dse.accuracy.simulate import calibrate  # noqa: E402
from dse.models import build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--noise", type=float, default=0.0, help="noise sigma, % of full scale")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model("resnet18_cifar10").eval()
    overrides = {"*": {"noise_sigma_pct": args.noise}} if args.noise else None
    cim = convert(model, ROOT / "hardware" / "aimc_template.yaml", overrides)
    x = torch.randn(args.batch, 3, 32, 32)
    calibrate(cim, [(x[:64], None)])
    set_mode(cim, "simulate")
    set_generator(cim, torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    with torch.no_grad():
        out = cim(x)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"ResNet-18 CIFAR-10, batch {args.batch}, aimc_template (128 rows, ADC 8, 2 b/cycle), "
          f"noise {args.noise}% FS: output {tuple(out.shape)}")
    print(f"wall {wall:.1f} s; peak RSS {peak:.2f} GiB (before the simulated pass: {before:.2f} GiB); "
          f"load {'/'.join(f'{v:.1f}' for v in os.getloadavg())}; threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
