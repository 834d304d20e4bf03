"""The optimisation profile of an engine's "images" input: min/opt/max NHWC shapes.

Plain Python (no tensorrt). drn-build-engine's default profile follows the model and the robot
(deploy/tensorrt_profile.py): the model's input size and the number of cameras, not a fixed
4x1024x2048 maximum.
"""
from __future__ import annotations

from dataclasses import dataclass

# What --shapes looks like (N x H x W [x 3], min/opt/max).
EXAMPLE_SHAPES = "1x256x512x3/1x512x1024x3/2x512x1024x3"
MIN_SIDE = 8  # smallest profile height/width: one pixel at the network's output stride

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class Profile:
    """Min/opt/max NHWC shapes of the "images" input."""

    min: Shape
    opt: Shape
    max: Shape

    @classmethod
    def parse(cls, text: str) -> "Profile":
        """"1x256x512x3/1x512x1024x3/4x1024x2048x3" (the x3 may be left out) -> Profile.

        Any H, W of at least MIN_SIDE: the exported graph runs every size and crops to it.
        """
        parts = str(text).strip().split("/")
        if len(parts) != 3:
            raise ValueError(f"--shapes needs MIN/OPT/MAX, e.g. {EXAMPLE_SHAPES}; got {text!r}")
        shapes = []
        for part in parts:
            try:
                dims = tuple(int(d) for d in part.lower().split("x"))
            except ValueError:
                raise ValueError(f"--shapes: {part!r} is not NxHxW or NxHxWx3 (in {text!r})") from None
            if len(dims) == 3:
                dims = dims + (3,)
            if len(dims) != 4 or dims[3] != 3:
                raise ValueError(f"--shapes: {part!r} is not NxHxW or NxHxWx3 (in {text!r})")
            if min(dims) <= 0:
                raise ValueError(f"--shapes: {part!r} has a dimension <= 0")
            if dims[1] < MIN_SIDE or dims[2] < MIN_SIDE:
                raise ValueError(f"--shapes: height and width must be at least {MIN_SIDE}, got {part!r}")
            shapes.append((dims[0], dims[1], dims[2], dims[3]))
        lo, opt, hi = shapes
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise ValueError(f"--shapes: need MIN <= OPT <= MAX in every dimension, got {text!r}")
        return cls(lo, opt, hi)

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        def shape(v) -> Shape:
            dims = tuple(int(x) for x in v)
            if len(dims) != 4:
                raise ValueError(f"profile shape {v!r} is not NHWC")
            return (dims[0], dims[1], dims[2], dims[3])

        return cls(shape(d["min"]), shape(d["opt"]), shape(d["max"]))

    def to_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def __str__(self) -> str:
        return "/".join(shape_str(s) for s in (self.min, self.opt, self.max))

    def violation(self, shape: tuple[int, ...]) -> str | None:
        """Why an (N, H, W, 3) batch cannot run on this profile (batches above max N are split by the caller)."""
        n, h, w = shape[0], shape[1], shape[2]
        if n < self.min[0]:
            return f"batch of {n} is below the engine's minimum batch {self.min[0]}"
        for name, value, lo, hi in (("height", h, self.min[1], self.max[1]), ("width", w, self.min[2], self.max[2])):
            if not lo <= value <= hi:
                return (
                    f"image {name} {value} is outside the engine's profile ({lo}..{hi}, shapes {self}); "
                    "rebuild the engine with drn-build-engine --shapes MIN/OPT/MAX covering this size"
                )
        return None


def shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(d)) for d in shape)


def batch_chunks(n: int, max_batch: int) -> list[tuple[int, int]]:
    """[start, stop) ranges that split a batch of ``n`` into pieces of at most ``max_batch``."""
    if n < 0 or max_batch < 1:
        raise ValueError(f"cannot split a batch of {n} into pieces of {max_batch}")
    return [(a, min(a + max_batch, n)) for a in range(0, n, max_batch)]
