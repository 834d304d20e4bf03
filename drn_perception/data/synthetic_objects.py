"""What the synthetic street scenes are drawn with: a canvas that draws every primitive into the
colour and the label image alike, the pinhole camera, the colour palettes, and the objects
placed on the ground (trees, hedges, poles with lamps and signs, people, cars), each made as a
function that draws it once the scene has ordered the objects back to front. synthetic.py lays
out the street and composes the scene from these."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

# Cityscapes trainIds used here.
ROAD, SIDEWALK, BUILDING, POLE, SIGN = 0, 1, 2, 5, 7
VEGETATION, TERRAIN, SKY, PERSON, CAR = 8, 9, 10, 11, 13


def to_color(c) -> tuple[int, int, int]:
    return tuple(min(255, max(0, int(round(float(x))))) for x in c)


def to_points(p) -> np.ndarray:
    return np.rint(np.asarray(p, np.float64)).astype(np.int32)


class Canvas:
    """Colour and label images drawn with identical primitives."""

    def __init__(self, height: int, width: int):
        self.h, self.w = height, width
        self.rgb = np.zeros((height, width, 3), np.uint8)
        self.lab = np.zeros((height, width), np.uint8)

    def polys(self, polys, color, label: int) -> None:
        polys = [to_points(p) for p in polys]
        if not polys:
            return
        cv2.fillPoly(self.rgb, polys, to_color(color))
        cv2.fillPoly(self.lab, polys, int(label))

    def poly(self, pts, color, label: int) -> None:
        self.polys([pts], color, label)

    def circle(self, c, r: float, color, label: int) -> None:
        c = (int(round(c[0])), int(round(c[1])))
        r = max(1, int(round(r)))
        cv2.circle(self.rgb, c, r, to_color(color), -1)
        cv2.circle(self.lab, c, r, int(label), -1)

    def ellipse(self, c, axes, angle: float, a0: float, a1: float, color, label: int) -> None:
        c = (int(round(c[0])), int(round(c[1])))
        ax = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
        cv2.ellipse(self.rgb, c, ax, angle, a0, a1, to_color(color), -1)
        cv2.ellipse(self.lab, c, ax, angle, a0, a1, int(label), -1)

    def line(self, p0, p1, thickness: float, color, label: int) -> None:
        p0 = (int(round(p0[0])), int(round(p0[1])))
        p1 = (int(round(p1[0])), int(round(p1[1])))
        t = max(1, int(round(thickness)))
        cv2.line(self.rgb, p0, p1, to_color(color), t)
        cv2.line(self.lab, p0, p1, int(label), t)

    def rect(self, x0, y0, x1, y1, color, label: int) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, label)


class Camera:
    """Pinhole camera at height ``ch`` above the ground plane Y=0, looking along +Z."""

    def __init__(self, f: float, cx: float, cy: float, ch: float, x0: float, h: int, w: int):
        self.f, self.cx, self.cy, self.ch, self.x0 = f, cx, cy, ch, x0
        self.h, self.w = h, w
        # Nearest depth used for ground geometry: its ground row lies well below the image.
        self.z_near = f * ch / (1.6 * h - cy)

    def project(self, X, Y, Z) -> np.ndarray:
        Z = np.asarray(Z, np.float64)
        u = self.cx + self.f * (np.asarray(X, np.float64) - self.x0) / Z
        v = self.cy + self.f * (self.ch - np.asarray(Y, np.float64)) / Z
        u, v = np.broadcast_arrays(u, v)
        return np.stack([u, v], axis=-1)

    def u(self, X, Z):
        return self.cx + self.f * (X - self.x0) / Z

    def v(self, Y, Z):
        return self.cy + self.f * (self.ch - Y) / Z


def quad_x(cam, X, ya, yb, za, zb):
    return cam.project([X, X, X, X], [ya, yb, yb, ya], [za, za, zb, zb])


def quad_y(cam, Y, xa, xb, za, zb):
    return cam.project([xa, xb, xb, xa], [Y, Y, Y, Y], [za, za, zb, zb])


def quad_z(cam, Z, xa, xb, ya, yb):
    return cam.project([xa, xb, xb, xa], [ya, ya, yb, yb], [Z, Z, Z, Z])


def jitter(rng, c, amount: float):
    return np.asarray(c, np.float64) + rng.uniform(-amount, amount, 3)


# ----------------------------------------------------------------------------- palettes

def sidewalk_color(rng):
    lum = rng.uniform(135, 180)
    tint = [(1.0, 1.0, 1.0), (1.04, 0.98, 0.93), (1.06, 0.95, 0.95), (0.97, 0.99, 1.03)]
    return np.array(tint[rng.integers(len(tint))]) * lum + rng.uniform(-5, 5, 3)


def road_color(rng):
    lum = rng.uniform(62, 100)
    return np.array([lum, lum * rng.uniform(0.99, 1.03), lum * rng.uniform(1.0, 1.08)])


def terrain_color(rng):
    base = [(128, 138, 64), (140, 136, 78), (116, 128, 60), (150, 140, 90), (122, 140, 72)]
    return jitter(rng, base[rng.integers(len(base))], 12)


def vegetation_color(rng):
    return np.array([rng.uniform(28, 72), rng.uniform(72, 120), rng.uniform(18, 50)])


FACADES = [(196, 178, 146), (168, 84, 58), (150, 72, 52), (210, 196, 160), (176, 168, 160),
            (200, 160, 110), (150, 136, 120), (214, 206, 186), (120, 104, 92), (188, 120, 86)]
CAR_COLORS = [(228, 228, 228), (172, 174, 178), (104, 106, 110), (32, 32, 36), (28, 38, 88),
               (164, 24, 24), (40, 70, 150), (36, 84, 56), (192, 172, 128), (212, 178, 36),
               (120, 20, 30), (70, 110, 140)]
SKIN = [(234, 196, 166), (214, 164, 126), (176, 122, 86), (120, 80, 56), (86, 58, 40)]
HAIR = [(30, 24, 20), (70, 46, 30), (120, 84, 50), (200, 170, 110), (140, 140, 140)]
PANTS = [(30, 34, 60), (40, 40, 44), (70, 70, 74), (150, 130, 100), (20, 20, 24),
          (60, 80, 120)]
SHIRTS = [(200, 40, 40), (40, 90, 170), (230, 230, 225), (30, 30, 32), (60, 140, 70),
           (230, 190, 40), (120, 60, 140), (220, 120, 40), (110, 110, 115), (90, 60, 40)]


# ----------------------------------------------------------------------------- objects

def make_tree(cv, rng, cam, X, Z) -> Callable[[], None]:
    trunk_h = rng.uniform(1.8, 3.2)
    r = rng.uniform(1.5, 3.5)
    trunk_w = rng.uniform(0.3, 0.5)
    trunk_col = np.array([rng.uniform(60, 95), rng.uniform(45, 65), rng.uniform(30, 45)])
    crown = vegetation_color(rng)
    blobs = [(rng.uniform(-0.6, 0.6) * r, rng.uniform(-0.45, 0.5) * r, rng.uniform(0.4, 0.65) * r,
              rng.uniform(-12, 12)) for _ in range(int(rng.integers(7, 13)))]

    def draw():
        sc = cam.f / Z
        u, vg = cam.u(X, Z), cam.v(0, Z)
        tw = max(trunk_w * sc, cv.w / 110)
        yc = cam.v(trunk_h + 0.6 * r, Z)
        cv.rect(u - tw / 2, yc, u + tw / 2, vg, trunk_col, VEGETATION)
        for dx, dy, rr, shade in blobs:
            cv.circle((u + dx * sc, yc - dy * sc), rr * sc, crown + shade, VEGETATION)

    return draw


def make_hedge(cv, rng, cam, s, side, za, zb) -> Callable[[], None]:
    a, b = sorted(side.grass)
    depth = min(rng.uniform(0.7, 1.2), b - a - 0.3)
    xin = rng.uniform(a + 0.15, b - depth - 0.15)
    xa, xb = xin, xin + depth
    hgt = rng.uniform(0.7, 1.5)
    col = vegetation_color(rng)

    def draw():
        inner = xb if s < 0 else xa
        if (inner - cam.x0) * s > 0:
            cv.poly(quad_x(cam, inner, 0, hgt, za, zb), col * 0.85, VEGETATION)
        if hgt < cam.ch:
            cv.poly(quad_y(cam, hgt, xa, xb, za, zb), col * 1.1, VEGETATION)
        cv.poly(quad_z(cam, za, xa, xb, 0, hgt), col, VEGETATION)

    return draw


# Vertical stripes across a pole (fractions of its width) and their brightness factors.
POLE_SHADING = ((0.0, 1.0, 0.85), (0.0, 0.18, 0.55), (0.3, 0.55, 1.3), (0.8, 1.0, 0.65))

SIGN_KINDS = ("round_red", "no_entry", "round_blue", "triangle", "square_blue", "diamond",
               "rect_green", "stop")


def draw_sign(cv, kind: str, c, s: float) -> None:
    x, y = c
    r = s / 2
    white = (235, 235, 235)
    if kind in ("round_red", "no_entry"):
        cv.circle(c, r, (200, 30, 35), SIGN)
        if kind == "round_red":
            cv.circle(c, r * 0.72, white, SIGN)
        else:
            cv.rect(x - r * 0.65, y - r * 0.18, x + r * 0.65, y + r * 0.18, white, SIGN)
    elif kind == "round_blue":
        cv.circle(c, r, (30, 80, 180), SIGN)
        cv.poly([(x, y - r * 0.6), (x + r * 0.45, y), (x - r * 0.45, y)], white, SIGN)
        cv.rect(x - r * 0.15, y, x + r * 0.15, y + r * 0.6, white, SIGN)
    elif kind == "triangle":
        h = s * 0.9
        cv.poly([(x, y - h / 2), (x + r, y + h / 2), (x - r, y + h / 2)], (205, 35, 35), SIGN)
        cv.poly([(x, y - h / 2 + 0.3 * r), (x + 0.62 * r, y + h / 2 - 0.17 * r),
                 (x - 0.62 * r, y + h / 2 - 0.17 * r)], white, SIGN)
    elif kind == "square_blue":
        cv.rect(x - r, y - r, x + r, y + r, (30, 90, 190), SIGN)
        cv.rect(x - r * 0.35, y - r * 0.6, x + r * 0.35, y + r * 0.6, white, SIGN)
    elif kind == "diamond":
        cv.poly([(x, y - r * 1.1), (x + r * 1.1, y), (x, y + r * 1.1), (x - r * 1.1, y)], white,
                SIGN)
        cv.poly([(x, y - r * 0.8), (x + r * 0.8, y), (x, y + r * 0.8), (x - r * 0.8, y)],
                (235, 190, 20), SIGN)
    elif kind == "rect_green":
        cv.rect(x - r * 1.5, y - r * 0.75, x + r * 1.5, y + r * 0.75, white, SIGN)
        cv.rect(x - r * 1.35, y - r * 0.6, x + r * 1.35, y + r * 0.6, (20, 110, 70), SIGN)
    else:  # stop
        ang = np.deg2rad(22.5 + 45 * np.arange(8))
        oct_ = np.stack([x + r * np.cos(ang), y + r * np.sin(ang)], 1)
        cv.poly(oct_, (190, 25, 30), SIGN)
        cv.rect(x - r * 0.6, y - r * 0.16, x + r * 0.6, y + r * 0.16, white, SIGN)


def make_pole(cv, rng, cam, X, Z, kind: str, s: int) -> Callable[[], None]:
    # Galvanised metal: neutral grey with strong cylinder shading (dark edge, bright ridge).
    lum = rng.uniform(120, 180)
    col = np.array([lum, lum, lum * rng.uniform(1.0, 1.06)]) + rng.uniform(-4, 4, 3)
    min_w = cv.w / rng.uniform(30, 36)
    lamp_h = rng.uniform(6.0, 9.0)
    arm = rng.uniform(1.5, 2.6)
    n_signs = 1 + int(rng.random() < 0.35) if kind == "sign" else int(rng.random() < 0.3)
    sign_kinds = [SIGN_KINDS[rng.integers(len(SIGN_KINDS))] for _ in range(n_signs)]
    sign_y = rng.uniform(2.4, 3.2)
    sign_off = rng.uniform(-0.6, 0.6)

    def draw():
        sc = cam.f / Z
        u, vg = cam.u(X, Z), cam.v(0, Z)
        pw = max(0.2 * sc, min_w)
        ssz = float(np.clip(0.8 * sc, cv.w / 15, cv.w / 8))
        vs = cam.v(sign_y, Z)
        if kind == "sign":
            vtop = vs - 0.3 * ssz
        else:
            vtop = cam.v(lamp_h, Z)
        x0, x1 = u - pw / 2, u + pw / 2
        for a, b, k in POLE_SHADING:
            cv.rect(x0 + a * pw, vtop, x0 + b * pw, vg, col * k, POLE)
        if kind == "lamp":
            ue = u - s * max(arm * sc, 2.5 * pw)
            ve = vtop + 0.2 * pw
            cv.line((u, vtop + 0.3 * pw), (ue, ve), 0.8 * pw, col, POLE)
            cv.rect(ue - 1.2 * pw, ve - 0.2 * pw, ue + 1.2 * pw, ve + 0.6 * pw, col * 0.9, POLE)
        y = vs
        for k in sign_kinds:
            draw_sign(cv, k, (u + sign_off * pw, y), ssz)
            y += 1.15 * ssz

    return draw


def make_person(cv, rng, u, v, h) -> Callable[[], None]:
    skin = jitter(rng, SKIN[rng.integers(len(SKIN))], 8)
    hair = jitter(rng, HAIR[rng.integers(len(HAIR))], 8)
    shirt = jitter(rng, SHIRTS[rng.integers(len(SHIRTS))], 20)
    pants = jitter(rng, PANTS[rng.integers(len(PANTS))], 10)
    side_view = rng.random() < 0.35
    coat = rng.random() < 0.3
    stride = rng.uniform(-0.13, 0.13) if side_view else rng.uniform(-0.05, 0.05)
    swing = rng.uniform(-0.08, 0.08)
    bag = rng.random() < 0.25
    bag_col = jitter(rng, (60, 40, 30), 25)

    def draw():
        sw = (0.09 if side_view else 0.135) * h
        hw = (0.08 if side_view else 0.105) * h
        head_r = 0.075 * h
        y_sh, y_hip = v - 0.82 * h, v - 0.47 * h
        leg_t = 0.1 * h
        for sgn in (-1, 1):
            fx = u + sgn * (0.02 if side_view else 0.055) * h + sgn * stride * h
            hx = u + sgn * (0.02 if side_view else 0.055) * h
            cv.line((hx, y_hip), (fx, v - 0.04 * h), leg_t, pants, PERSON)
            cv.ellipse((fx + 0.02 * h, v - 0.025 * h), (0.06 * h, 0.03 * h), 0, 0, 360,
                       (25, 25, 28), PERSON)
        bottom = v - 0.28 * h if coat else y_hip + 0.04 * h
        bw = hw * (1.3 if coat else 1.0)
        cv.poly([(u - sw, y_sh), (u + sw, y_sh), (u + bw, bottom), (u - bw, bottom)], shirt,
                PERSON)
        cv.rect(u - 0.035 * h, y_sh - 0.05 * h, u + 0.035 * h, y_sh + 0.01 * h, skin, PERSON)
        arm_t = 0.065 * h
        for sgn in (-1, 1):
            sx = u + sgn * (sw - 0.03 * h)
            hx = sx + sgn * 0.02 * h + sgn * swing * h * (1 if sgn > 0 else -1)
            cv.line((sx, y_sh + 0.03 * h), (hx, v - 0.45 * h), arm_t, shirt * 0.9, PERSON)
            cv.circle((hx, v - 0.43 * h), 0.035 * h, skin, PERSON)
        hc = (u, y_sh - 0.05 * h - head_r * 0.9)
        cv.circle(hc, head_r, skin, PERSON)
        cv.ellipse(hc, (head_r * 1.05, head_r * 1.05), 0, 180, 360, hair, PERSON)
        if bag:
            bx = u + sw * 0.9
            cv.rect(bx, v - 0.55 * h, bx + 0.12 * h, v - 0.38 * h, bag_col, PERSON)

    return draw


def make_car(cv, rng, cam, Xc, Zn, toward: bool) -> Callable[[], None]:
    wc = rng.uniform(1.65, 1.9)
    length = rng.uniform(3.8, 4.8)
    yb = rng.uniform(0.22, 0.32)
    y1 = rng.uniform(0.85, 1.0)
    y2 = rng.uniform(1.38, 1.6)
    c_rear, c_front = rng.uniform(0.5, 1.0), rng.uniform(0.9, 1.4)
    if toward:
        c_rear, c_front = c_front, c_rear
    col = jitter(rng, CAR_COLORS[rng.integers(len(CAR_COLORS))], 10)
    glass = np.array([rng.uniform(20, 45), rng.uniform(25, 50), rng.uniform(30, 60)])

    def draw():
        xl, xr = Xc - wc / 2, Xc + wc / 2
        zf = Zn + length
        dark = (22, 22, 24)
        # Wheels seen below the near face.
        for xa in (xl + 0.05, xr - 0.27):
            cv.poly(quad_z(cam, Zn + 0.7, xa, xa + 0.22, 0, yb + 0.1), dark, CAR)
        side_x = xl if xl > cam.x0 else (xr if xr < cam.x0 else None)
        if side_x is not None:
            cv.poly(quad_x(cam, side_x, yb, y1, Zn, zf), col * 0.8, CAR)
        if cam.ch > y1:
            cv.poly(quad_y(cam, y1, xl, xr, Zn, zf), col * 1.08, CAR)
        cv.poly(quad_z(cam, Zn, xl, xr, yb, y1), col, CAR)
        # Cabin.
        ci = 0.12
        za, zb = Zn + c_rear, zf - c_front
        if side_x is not None:
            sx = side_x + (ci if side_x == xl else -ci)
            cv.poly(quad_x(cam, sx, y1, y2, za, zb), col * 0.8, CAR)
            cv.poly(quad_x(cam, sx, y1 + 0.06, y2 - 0.06, za + 0.25, zb - 0.15), glass, CAR)
        if cam.ch > y2:
            cv.poly(quad_y(cam, y2, xl + ci, xr - ci, za, zb), col * 1.12, CAR)
        cv.poly(quad_z(cam, za, xl + ci, xr - ci, y1, y2), col * 0.95, CAR)
        cv.poly(quad_z(cam, za, xl + ci + 0.1, xr - ci - 0.1, y1 + 0.06, y2 - 0.07), glass, CAR)
        # Side wheels.
        if side_x is not None:
            ang = np.linspace(0, 2 * np.pi, 14, endpoint=False)
            for zw in (Zn + 0.75, zf - 0.8):
                zz, yy = zw + 0.33 * np.cos(ang), 0.33 + 0.33 * np.sin(ang)
                cv.poly(cam.project(side_x, yy, zz), dark, CAR)
                zz, yy = zw + 0.15 * np.cos(ang), 0.33 + 0.15 * np.sin(ang)
                cv.poly(cam.project(side_x, yy, zz), (120, 120, 125), CAR)
        # Lights and plate on the near face.
        light = (235, 235, 215) if toward else (200, 20, 20)
        for xa in (xl + 0.08, xr - 0.38):
            cv.poly(quad_z(cam, Zn, xa, xa + 0.3, y1 - 0.22, y1 - 0.08), light, CAR)
        cv.poly(quad_z(cam, Zn, Xc - 0.26, Xc + 0.26, yb + 0.12, yb + 0.24), (230, 230, 225),
                CAR)
        if toward:
            cv.poly(quad_z(cam, Zn, Xc - 0.5, Xc + 0.5, yb + 0.3, y1 - 0.25), (40, 40, 44), CAR)

    return draw
