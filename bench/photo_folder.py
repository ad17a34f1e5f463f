"""Write a folder of synthetic "photos" like a user's own: `<root>/<class>/<name>.jpg|png`.

Each class is one shape in one colour (0 red disc, 1 green square, 2 blue triangle, 3 yellow
bar, ...) at a random place and scale on a noisy background, so the classes are learnable in a
few epochs even after grayscale conversion (the shape remains). Sizes, Pillow modes and file
formats are drawn at random, as in a folder collected from phones and the web.

    python bench/photo_folder.py OUT [--classes 3] [--per-class 80] [--sizes 40,90]
        [--formats jpeg] [--modes RGB] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 210, 40), (200, 60, 200)]
SHAPES = ["disc", "square", "triangle", "bar", "ring"]
MODES = ("L", "RGB", "RGBA", "P")
FORMATS = ("jpeg", "png")


def make_photo_folder(
    root: str | Path,
    *,
    classes: int = 3,
    per_class: int = 80,
    sizes: tuple[int, int] = (40, 90),
    formats: tuple[str, ...] = ("jpeg",),
    modes: tuple[str, ...] = ("RGB",),
    seed: int = 0,
) -> dict[str, list[tuple[str, str, int, int]]]:
    """Write the folder; returns class name -> [(file name, mode, height, width), ...].

    JPEG cannot hold RGBA or palette images: a file drawn as JPEG with such a mode is saved as
    PNG instead, so every requested mode appears.
    """
    if not 2 <= classes <= len(SHAPES):
        raise ValueError(f"classes must be in [2, {len(SHAPES)}]. Received: classes={classes}")
    rng = np.random.default_rng(seed)
    written: dict[str, list[tuple[str, str, int, int]]] = {}
    for label in range(classes):
        name = f"{SHAPES[label]}_{label}"
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        written[name] = []
        for number in range(per_class):
            height, width = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, size=2))
            image = _draw(label, height, width, rng)
            mode = str(rng.choice(modes))
            image_format = str(rng.choice(formats))
            if image_format == "jpeg" and mode not in ("L", "RGB"):
                image_format = "png"
            image = _to_mode(image, mode, rng)
            file_name = f"{number:04d}.{'jpg' if image_format == 'jpeg' else 'png'}"
            image.save(folder / file_name, format=image_format.upper())
            written[name].append((file_name, mode, height, width))
    return written


def _draw(label: int, height: int, width: int, rng: np.random.Generator) -> Image.Image:
    background = rng.integers(60, 140, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    side = min(height, width)
    radius = side * rng.uniform(0.25, 0.4)
    cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    cx = width / 2 + rng.uniform(-0.1, 0.1) * width
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    colour = COLOURS[label]
    shape = SHAPES[label]
    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)],
                     fill=colour)  # fmt: skip
    elif shape == "bar":
        draw.rectangle([cx - radius, cy - radius / 4, cx + radius, cy + radius / 4], fill=colour)
    else:
        draw.ellipse(box, outline=colour, width=max(2, int(radius / 3)))
    return image


def _to_mode(image: Image.Image, mode: str, rng: np.random.Generator) -> Image.Image:
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(200, 256, size=image.size[::-1], dtype=np.uint8))
        image = image.convert("RGBA")
        image.putalpha(alpha)
        return image
    if mode == "P":
        return image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return image.convert(mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=80)
    parser.add_argument("--sizes", default="40,90", help="smallest,largest side in pixels")
    parser.add_argument("--formats", default="jpeg", help="comma-separated: jpeg,png")
    parser.add_argument("--modes", default="RGB", help="comma-separated: L,RGB,RGBA,P")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    low, high = (int(v) for v in args.sizes.split(","))
    written = make_photo_folder(
        args.output,
        classes=args.classes,
        per_class=args.per_class,
        sizes=(low, high),
        formats=tuple(args.formats.split(",")),
        modes=tuple(args.modes.split(",")),
        seed=args.seed,
    )
    total = sum(len(files) for files in written.values())
    print(f"wrote {total} images in {len(written)} classes to {args.output}")


if __name__ == "__main__":
    main()
