"""What each rewrite in ``SAMSegSlicerLib/models/tinyvit_export.py`` buys the compiled (OpenVINO) encoder.

    python Testing/benchmarks/bench_export.py [--rounds N] [--threads T] [--precision bf16|fp32]

LiteMedSAM's encoder is converted and compiled three ways in this one process: the stock modules
(BatchNorms folded), with the attention rewritten (``SdpaAttention``), and with the attention and the
blocks rewritten (``ChannelsLastBlock``; what ``samseg models prepare`` builds).  The three are then
run on the compiled encoder's check image in turn, ``--rounds`` times, so a change in the machine's
load hits all of them alike; printed: median and best ms per slice, the ratio to the stock
modules, and each one's relative L2 distance from the float32 stock encoder.  It asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[2])]
os.environ["SAMSEG_COMPILED_ENCODER"] = "0"  # the eager model only: the variants are built here

VARIANTS = {"stock modules": (), "attention rewritten": ("attention",),
            "attention + blocks rewritten": ("attention", "blocks")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--threads", type=int, default=None, help="OpenVINO threads (default: torch's)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    args = parser.parse_args(argv)

    import openvino as ov
    import torch

    from SAMSegSlicerLib.models import compiled_encoder, load_model, resolve_spec

    model = load_model(resolve_spec("litemedsam"), device="cpu", precision=args.precision, compiled=False)
    threads = args.threads or torch.get_num_threads()
    example = torch.from_numpy(compiled_encoder.check_input(model))
    requests, reference = {}, None
    for name, rewrites in VARIANTS.items():
        encoder = compiled_encoder._exportable_network(model, rewrites)
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            if reference is None:
                reference = encoder(example).numpy()
            converted = ov.convert_model(encoder, example_input=example)
        compiled = ov.Core().compile_model(converted, "CPU", compiled_encoder.runtime_config(args.precision, threads))
        requests[name] = compiled.create_infer_request()
    inputs = {0: example.numpy()}
    errors = {}
    for name, request in requests.items():
        got = np.array(request.infer(inputs)[0], dtype=np.float32)
        errors[name] = compiled_encoder.compare(got, reference)[1]
        request.infer(inputs)
    seconds = {name: [] for name in requests}
    for _ in range(args.rounds):
        for name, request in requests.items():
            started = time.perf_counter()
            request.infer(inputs)
            seconds[name].append(time.perf_counter() - started)
    print(f"LiteMedSAM encoder, OpenVINO {compiled_encoder.runtime_version()}, {args.precision}, {threads} threads, "
          f"{args.rounds} rounds, load {os.getloadavg()[0]:.2f}")
    stock = float(np.median(seconds["stock modules"]))
    for name, times in seconds.items():
        median = float(np.median(times))
        print(f"  {name:30s} median {1000 * median:7.1f} ms  best {1000 * min(times):7.1f} ms  "
              f"x stock {median / stock:.3f}  rel. L2 vs fp32 stock {errors[name]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
