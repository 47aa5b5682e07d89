"""Evaluate an ONNX workload on an IMC accelerator: ``python main_onnx.py WORKLOAD HW MAPPING``.

The same as ``cim-dse evaluate``: a per-layer table and totals, and summary.json, layers.json and
layers.csv under outputs/<hardware>-<workload>/ (or --output DIR).
"""

import argparse
import sys

from dse.cli import add_evaluate_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="main_onnx.py", description=__doc__.splitlines()[0])
    add_evaluate_arguments(parser)
    parser.parse_args()  # --help and usage errors here; the command itself runs in dse.cli
    sys.exit(main(["evaluate", *sys.argv[1:]]))
