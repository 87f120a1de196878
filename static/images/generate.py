#!/usr/bin/env python3
"""Draws the default avatars (head1..head9.png) and the default group picture (group.png).

Our own simple pictures, not the original's: a light figure on a coloured square, anti-aliased by
supersampling. Standard library only; run it from this folder and commit its output, which the
server embeds (src/http/files.rs).
"""
import struct
import zlib

SIZE = 96
SAMPLES = 4  # supersampling per axis

COLOURS = [
    (0x4C, 0xAF, 0x50), (0x21, 0x96, 0xF3), (0xFF, 0x98, 0x00),
    (0x9C, 0x27, 0xB0), (0xE9, 0x1E, 0x63), (0x00, 0x96, 0x88),
    (0x3F, 0x51, 0xB5), (0x79, 0x55, 0x48), (0x60, 0x7D, 0x8B),
]
GROUP_COLOUR = (0x07, 0xC1, 0x60)
FIGURE = (0xFF, 0xFF, 0xFF)


def person(cx, cy, scale):
    """A head and shoulders centred on (cx, cy): a predicate on points of the unit square."""
    def inside(x, y):
        head = (x - cx) ** 2 + (y - (cy - 0.14 * scale)) ** 2 <= (0.17 * scale) ** 2
        dx, dy = (x - cx) / (0.34 * scale), (y - (cy + 0.36 * scale)) / (0.30 * scale)
        shoulders = dx * dx + dy * dy <= 1 and y <= cy + 0.36 * scale
        return head or shoulders
    return inside


def render(background, shapes):
    rows = []
    for py in range(SIZE):
        row = bytearray([0])  # filter type: none
        for px in range(SIZE):
            hits = 0
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    x = (px + (sx + 0.5) / SAMPLES) / SIZE
                    y = (py + (sy + 0.5) / SAMPLES) / SIZE
                    if any(shape(x, y) for shape in shapes):
                        hits += 1
            a = hits / (SAMPLES * SAMPLES)
            row += bytes(round(b * (1 - a) + f * a) for b, f in zip(background, FIGURE))
        rows.append(bytes(row))
    return png(b"".join(rows))


def png(raw):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    for n, colour in enumerate(COLOURS, start=1):
        with open(f"head{n}.png", "wb") as out:
            out.write(render(colour, [person(0.5, 0.5, 1.0)]))
    group = [person(0.27, 0.58, 0.6), person(0.73, 0.58, 0.6), person(0.5, 0.45, 0.75)]
    with open("group.png", "wb") as out:
        out.write(render(GROUP_COLOUR, group))


if __name__ == "__main__":
    main()
