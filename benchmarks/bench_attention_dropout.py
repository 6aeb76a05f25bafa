"""Training step of the sequence encoder: torch's attention dropout against skdssm's own.

Fits draw their dropout masks from a generator of their own (so fits in threads do not share
torch's default generator); in training, attention dropout therefore runs through
``skdssm.nn._attention_with_dropout`` instead of ``nn.MultiheadAttention``'s fused kernel. This
times one forward + backward pass of a ``SequenceEncoder`` (the retriever's
``user_representation="sequence"`` tower part) both ways, interleaved, on the same batch.

Usage::

    python benchmarks/bench_attention_dropout.py [--threads 1] [--batch 512] [--length 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from skdssm import nn as skdssm_nn
from skdssm.nn import SequenceEncoder, training_generator


def step(encoder, codes) -> None:
    encoder(codes).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = SequenceEncoder(2000, args.length, args.dim, n_heads=2, dropout=0.4).train()
    lengths = torch.randint(1, args.length + 1, (args.batch,))
    codes = torch.randint(2, 2000, (args.batch, args.length))
    codes[torch.arange(args.length)[None, :] >= lengths[:, None]] = 0
    native = skdssm_nn._attention_with_dropout

    def torch_attention(attention, hidden, key_padding):
        return attention(hidden, hidden, hidden, key_padding_mask=key_padding,
                         need_weights=False)[0]

    times = {"torch MultiheadAttention (default generator)": [],
             "skdssm attention (fit's generator)": []}
    with training_generator(torch.Generator().manual_seed(0)):
        for _ in range(args.repeats):
            for name, attend in zip(times, (torch_attention, native)):
                skdssm_nn._attention_with_dropout = attend
                start = time.perf_counter()
                step(encoder, codes)
                times[name].append(time.perf_counter() - start)
    skdssm_nn._attention_with_dropout = native
    for name, values in times.items():
        print(f"{name}: median {1000 * np.median(values):.1f} ms per forward + backward "
              f"(batch {args.batch}, length {args.length}, dim {args.dim}, "
              f"{args.threads} thread(s))")


if __name__ == "__main__":
    main()
