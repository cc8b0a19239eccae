"""CPU cost of a bus frame's MAC: encode/decode of a v2 (MAC'd) frame next to the old v1 encoding (no MAC),
interleaved in one process, medians of repetitions (the machine is shared: compare within one run only).

    python -m experiments.bus_frame_cost --size 300 --rounds 3
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from strategies.bus.endpoint import BusFrame, FrameKind, decode_frame, encode_frame, frame_key


def _v1(frame: BusFrame) -> bytes:
    """The frame encoding before cluster keys (for comparison only)."""
    fields = (b"v1", frame.kind.value.encode(), frame.publisher.encode(), frame.stream.encode())
    return b"|".join((*fields, str(frame.seq).encode())) + b"\n" + frame.payload


def _median_us(fn: Callable[[], object], number: int) -> float:
    return sorted(timeit.repeat(fn, number=number, repeat=7))[3] / number * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=300, help="payload bytes")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--number", type=int, default=20_000)
    args = p.parse_args()
    key = frame_key(b"k" * 32, "wsim")
    frame = BusFrame(FrameKind.DATA, "node-1#abcd1234", "node-2", 12345, b"x" * args.size)
    data = encode_frame(frame, key)
    for _ in range(args.rounds):
        v1 = _median_us(lambda: _v1(frame), args.number)
        enc = _median_us(lambda: encode_frame(frame, key), args.number)
        dec = _median_us(lambda: decode_frame(data, key), args.number)
        print(f"v1 encode (no MAC) {v1:.2f} us | v2 encode {enc:.2f} us | v2 decode {dec:.2f} us")


if __name__ == "__main__":
    main()
