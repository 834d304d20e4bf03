"""Procedural street scenes with exact per-pixel Cityscapes trainId labels.

There is no labelled street-scene data these machines can download, so training and tests
use scenes drawn here: a pinhole camera looks down a straight street (road, kerbs, lane
markings, sidewalks, grass verges, buildings with windows or a park with trees), with cars,
people, poles, street lamps and traffic signs placed on the ground plane, a sky with clouds,
and per-class textures, lighting and sensor noise on top.

Every primitive is drawn twice with the same OpenCV call, once into the colour image and once
into the label image, in back-to-front order, so each pixel's label is the class of the object
visible there. Lighting, texture and noise change colours only. Label 255 is never used.

Sizes are sampled relative to the image, so a seed gives the same scene at any resolution of
the same aspect ratio; the random draws that place objects do not depend on the pixel count.
Thin classes are drawn thicker than life (poles at least 1/36 of the image width, signs at
least 1/15) so that a network with output stride 8 can learn them.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Callable, Iterable

import cv2
import numpy as np

from drn_perception.data.synthetic_objects import (BUILDING, CAR, PERSON, POLE, ROAD, SIDEWALK, SIGN, SKY,
                                                  TERRAIN, VEGETATION, Camera, Canvas, FACADES, jitter, make_car,
                                                  make_hedge, make_person, make_pole, make_tree, quad_x, quad_y,
                                                  quad_z, road_color, sidewalk_color, terrain_color, to_color,
                                                  to_points, vegetation_color)

__all__ = ["SYNTHETIC_CLASS_IDS", "generate_scene", "generate_batch"]


#: Sorted trainIds that :func:`generate_scene` can emit.
SYNTHETIC_CLASS_IDS: tuple[int, ...] = tuple(
    sorted((ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR))
)

_MIN_SIDE = 16
_MAX_SIDE = 8192

# Per-class texture amplitudes (multiplicative luminance modulation) at three scales.
_TEX_FINE = {ROAD: 0.07, SIDEWALK: 0.05, BUILDING: 0.035, POLE: 0.03, SIGN: 0.02,
             VEGETATION: 0.20, TERRAIN: 0.14, SKY: 0.008, PERSON: 0.035, CAR: 0.025}
_TEX_MID = {ROAD: 0.035, SIDEWALK: 0.03, BUILDING: 0.025, VEGETATION: 0.30, TERRAIN: 0.08,
            PERSON: 0.02}
_TEX_COARSE = {ROAD: 0.09, SIDEWALK: 0.06, BUILDING: 0.05, VEGETATION: 0.10, TERRAIN: 0.10,
               SKY: 0.03}
# Colour shift per unit of coarse noise (relative R, G, B gain): patchy yellow/brown terrain.
_TEX_CHROMA = {TERRAIN: 1.0}
_CHROMA_RGB = (0.16, 0.06, -0.08)


def _lut(table: dict[int, float]) -> np.ndarray:
    lut = np.zeros((1, 256), np.float32)
    for k, v in table.items():
        lut[0, k] = v
    return lut


_LUT_FINE = _lut(_TEX_FINE)
_LUT_MID = _lut(_TEX_MID)
_LUT_COARSE = _lut(_TEX_COARSE)
_LUT_CHROMA = _lut(_TEX_CHROMA)


# ----------------------------------------------------------------------------- layout

def _sample_layout(rng, cam: Camera) -> SimpleNamespace:
    """Street cross-section (metres, X to the right): road, kerbs, sidewalks, verges, facades."""
    lay = SimpleNamespace()
    n_lanes = int(rng.integers(2, 5))
    lane_w = rng.uniform(3.0, 3.6)
    lay.road = (-n_lanes * lane_w / 2, n_lanes * lane_w / 2)
    lay.n_lanes, lay.lane_w = n_lanes, lane_w
    k = int(rng.integers(n_lanes))
    cam.x0 = lay.road[0] + (k + 0.5) * lane_w + rng.uniform(-0.5, 0.5)
    lay.road_color = road_color(rng)
    lay.sidewalk_color = sidewalk_color(rng)
    lay.terrain_color = terrain_color(rng)
    lay.sides = {}
    for s in (-1, 1):
        side = SimpleNamespace()
        side.curb = lay.road[1] if s > 0 else lay.road[0]
        side.sidewalk_w = rng.uniform(1.8, 4.5)
        side.grass_w = rng.uniform(2.0, 5.0) if rng.random() < 0.65 else 0.0
        side.grass_first = bool(rng.random() < 0.35)
        side.built = bool(rng.random() < 0.8)
        side.light = rng.uniform(0.72, 1.1)
        lay.sides[s] = side
    if all(lay.sides[s].built and lay.sides[s].grass_w == 0 for s in (-1, 1)):
        lay.sides[int(rng.choice([-1, 1]))].grass_w = rng.uniform(1.5, 3.0)
    for s, side in lay.sides.items():
        c = side.curb
        if side.grass_first:
            side.grass = (c, c + s * side.grass_w)
            side.walk = (side.grass[1], side.grass[1] + s * side.sidewalk_w)
            side.facade = side.walk[1]
        else:
            side.walk = (c, c + s * side.sidewalk_w)
            side.grass = (side.walk[1], side.walk[1] + s * side.grass_w)
            side.facade = side.grass[1]
    lay.far_facade = bool(rng.random() < 0.35) and any(lay.sides[s].built for s in (-1, 1))
    lay.z_end = rng.uniform(50, 150) if lay.far_facade else 250.0
    return lay


# ----------------------------------------------------------------------------- background

def _draw_sky(cv: Canvas, rng, cam: Camera) -> None:
    h, w = cv.h, cv.w
    top = np.array([rng.uniform(40, 110), rng.uniform(100, 160), rng.uniform(190, 245)])
    if rng.random() < 0.2:  # hazy / overcast sky: pale but still bluish
        top = np.array([rng.uniform(150, 185), rng.uniform(175, 200), rng.uniform(210, 235)])
    horizon = np.array([rng.uniform(185, 225), rng.uniform(205, 235), rng.uniform(228, 252)])
    t = np.clip(np.arange(h, dtype=np.float32) / max(cam.cy, 1.0), 0, 1)[:, None] ** 0.8
    grad = top[None, :] * (1 - t) + horizon[None, :] * t
    cv.rgb[:] = cv2.resize(np.clip(grad, 0, 255).astype(np.uint8)[:, None, :], (w, h),
                           interpolation=cv2.INTER_NEAREST)
    cv.lab[:] = SKY
    for _ in range(int(rng.integers(0, 6))):
        cu, cvv = rng.uniform(0, 1) * w, rng.uniform(0.05, 0.8) * cam.cy
        size = rng.uniform(0.04, 0.12) * w
        shade = rng.uniform(225, 252)
        for _ in range(int(rng.integers(4, 9))):
            c = (cu + rng.uniform(-1, 1) * size, cvv + rng.uniform(-0.25, 0.25) * size)
            ax = (rng.uniform(0.3, 0.7) * size, rng.uniform(0.12, 0.3) * size)
            g = shade - rng.uniform(0, 25)
            cv.ellipse(c, ax, 0, 0, 360, (g, g, min(255, g + 6)), SKY)


def _draw_skyline(cv: Canvas, rng, cam: Camera) -> None:
    """Distant buildings or tree line on the horizon (mostly covered by nearer things)."""
    w = cv.w
    x = -0.02 * w
    while x < w * 1.02:
        bw = rng.uniform(0.03, 0.09) * w
        if rng.random() < 0.5:
            bh = rng.uniform(0.025, 0.08) * cv.h
            col = jitter(rng, FACADES[rng.integers(len(FACADES))], 10) * 0.8
            cv.rect(x, cam.cy - bh, x + bw, cam.cy + 2, col, BUILDING)
        else:
            col = vegetation_color(rng)
            for _ in range(4):
                r = rng.uniform(0.2, 0.45) * bw
                cv.circle((x + rng.uniform(0, bw), cam.cy - rng.uniform(0, 0.04) * cv.h), r,
                          jitter(rng, col, 8), VEGETATION)
        x += bw


def _draw_ground(cv: Canvas, rng, cam: Camera, lay: SimpleNamespace) -> None:
    h, w = cv.h, cv.w
    zn, zf = cam.z_near, 2000.0
    cy = int(np.floor(cam.cy))
    cv.rect(-1, cy, w + 1, h + 1, lay.terrain_color, TERRAIN)
    for s, side in lay.sides.items():
        if side.grass_w > 0:
            cv.poly(quad_y(cam, 0, side.grass[0], side.grass[1], zn, zf), lay.terrain_color,
                    TERRAIN)
        cv.poly(quad_y(cam, 0, side.walk[0], side.walk[1], zn, zf), lay.sidewalk_color,
                SIDEWALK)
    cv.poly(quad_y(cam, 0, lay.road[0], lay.road[1], zn, zf), lay.road_color, ROAD)

    # Sidewalk paving joints: lines along and across the street.
    joint = lay.sidewalk_color * rng.uniform(0.8, 0.9)
    thick = max(1, int(round(w / 700)))
    for side in lay.sides.values():
        a, b = sorted(side.walk)
        segs = []
        for x in np.arange(a + 0.9, b - 0.3, rng.uniform(0.9, 1.6)):
            segs.append(cam.project([x, x], [0, 0], [zn, 60.0]))
        step = rng.uniform(0.8, 1.6)
        for z in np.arange(max(zn, 1.0), 45.0, step):
            segs.append(cam.project([a, b], [0, 0], [z, z]))
        if segs:
            cv2.polylines(cv.rgb, [to_points(p) for p in segs], False, to_color(joint), thick)
            cv2.polylines(cv.lab, [to_points(p) for p in segs], False, SIDEWALK, thick)
    # Kerb: the raised stone edge between sidewalk and road (part of the sidewalk).
    kerb = lay.sidewalk_color * rng.uniform(1.05, 1.2)
    for side in lay.sides.values():
        if not (side.grass_first and side.grass_w > 0):
            cv.poly(quad_x(cam, side.curb, 0, 0.14, zn, zf), kerb, SIDEWALK)

    # Lane markings: solid edge lines, dashed lane separators, optional zebra crossing.
    paint = np.array([rng.uniform(200, 240)] * 3)
    lw = rng.uniform(0.12, 0.18)
    rl, rr = lay.road
    marks = [quad_y(cam, 0, rl + 0.25, rl + 0.25 + lw, zn, zf),
             quad_y(cam, 0, rr - 0.25 - lw, rr - 0.25, zn, zf)]
    dash, gap = rng.uniform(2.5, 4.0), rng.uniform(5.0, 9.0)
    phase = rng.uniform(0, dash + gap)
    for i in range(1, lay.n_lanes):
        x = rl + i * lay.lane_w
        for z in np.arange(max(zn, 0.5) + phase - dash - gap, 150.0, dash + gap):
            za, zb = max(z, zn), z + dash
            if zb > za:
                marks.append(quad_y(cam, 0, x - lw / 2, x + lw / 2, za, zb))
    if rng.random() < 0.3:
        z0 = rng.uniform(6, 20)
        depth = rng.uniform(3.0, 4.5)
        for x in np.arange(rl + 0.5, rr - 0.5, 1.0):
            marks.append(quad_y(cam, 0, x, x + 0.5, z0, z0 + depth))
    cv.polys(marks, paint, ROAD)


def _draw_building_block(cv, rng, cam, side, za, zb, height) -> None:
    X = side.facade
    # All random draws first, so the scene does not depend on what is visible at this size.
    col = jitter(rng, FACADES[rng.integers(len(FACADES))], 14) * side.light
    plinth_h, plinth_k = rng.uniform(0.4, 0.9), rng.uniform(0.6, 0.8)
    cornice_h, cornice_k = rng.uniform(0.4, 0.9), rng.uniform(0.75, 1.15)
    floor_h = rng.uniform(3.0, 3.8)
    win_h = rng.uniform(1.2, 1.9)
    win_w = rng.uniform(0.8, 1.7)
    spacing = win_w + rng.uniform(0.8, 2.4)
    y_first = floor_h + rng.uniform(0.6, 1.0)
    glass = np.array([rng.uniform(20, 60), rng.uniform(28, 70), rng.uniform(40, 90)])
    frame = rng.random() < 0.5
    ys = np.arange(y_first, height - win_h - 0.8, floor_h)
    zs = np.arange(za + rng.uniform(0.6, 1.5), min(zb, 120.0) - win_w - 0.3, spacing)
    lit = rng.random(len(ys) * len(zs)) < 0.25
    shop = np.array([rng.uniform(25, 60)] * 3) + rng.uniform(-8, 8, 3)
    z = za + rng.uniform(0.5, 2.0)
    shops = []
    while z < min(zb, 80.0) - 2.0:
        wdt = rng.uniform(1.0, 3.5)
        top = rng.uniform(2.2, min(2.9, floor_h - 0.2))
        shops.append((rng.uniform(0.2, 0.7), top, z, min(z + wdt, zb - 0.5)))
        z += wdt + rng.uniform(0.8, 3.0)

    lo, hi = sorted((cam.u(X, za), cam.u(X, zb)))
    if hi < 0 or lo > cv.w:
        return
    cv.poly(quad_x(cam, X, 0, height, za, zb), col, BUILDING)
    if hi - lo < 3:
        return
    cv.poly(quad_x(cam, X, 0, plinth_h, za, zb), col * plinth_k, BUILDING)
    cv.poly(quad_x(cam, X, height - cornice_h, height, za, zb), col * cornice_k, BUILDING)
    if len(ys) and len(zs):
        Y, Z = np.meshgrid(ys, zs, indexing="ij")
        Y, Z = Y.ravel(), Z.ravel()
        Xs = np.full((len(Y), 4), X)
        quads = cam.project(Xs, np.stack([Y, Y + win_h, Y + win_h, Y], 1),
                            np.stack([Z, Z, Z + win_w, Z + win_w], 1))
        keep = (quads[:, :, 0].max(1) >= 0) & (quads[:, :, 0].min(1) < cv.w)
        keep &= (quads[:, :, 1].max(1) >= 0)
        if frame:
            cv.polys(list(quads[keep]), col * 1.25, BUILDING)
            t = 0.1
            quads = cam.project(Xs, np.stack([Y + t, Y + win_h - t, Y + win_h - t, Y + t], 1),
                                np.stack([Z + t, Z + t, Z + win_w - t, Z + win_w - t], 1))
        cv.polys(list(quads[keep & ~lit]), glass, BUILDING)
        cv.polys(list(quads[keep & lit]), glass * 1.8 + 20, BUILDING)
    # Ground floor: shop windows and doors.
    cv.polys([quad_x(cam, X, *q) for q in shops], shop, BUILDING)


def _draw_buildings(cv, rng, cam, lay) -> None:
    # Far facade across the street end, drawn first (everything else is in front of it).
    if lay.far_facade:
        xl = lay.sides[-1].facade - 6 if lay.sides[-1].built else lay.sides[-1].facade - 40
        xr = lay.sides[1].facade + 6 if lay.sides[1].built else lay.sides[1].facade + 40
        x = xl
        while x < xr:
            bw = rng.uniform(8, 25)
            hgt = rng.uniform(10, 35)
            col = jitter(rng, FACADES[rng.integers(len(FACADES))], 14)
            cv.poly(quad_z(cam, lay.z_end, x, x + bw, 0, hgt), col, BUILDING)
            glass = np.array([rng.uniform(20, 60), rng.uniform(28, 70), rng.uniform(40, 90)])
            ys = np.arange(rng.uniform(3.5, 4.5), hgt - 2.0, rng.uniform(3.0, 3.6))
            xs = np.arange(x + 1.0, x + bw - 1.5, rng.uniform(2.2, 3.5))
            if len(ys) and len(xs):
                Y, XX = np.meshgrid(ys, xs, indexing="ij")
                Y, XX = Y.ravel(), XX.ravel()
                q = cam.project(np.stack([XX, XX + 1.2, XX + 1.2, XX], 1),
                                np.stack([Y, Y, Y + 1.5, Y + 1.5], 1), lay.z_end)
                cv.polys(list(q), glass, BUILDING)
            x += bw
    for s, side in lay.sides.items():
        if side.built:
            blocks = []
            z = 1.0
            while z < lay.z_end:
                length = rng.uniform(8, 35)
                tall = rng.random() < 0.2 and z < 60
                height = rng.uniform(30, 50) if tall else rng.uniform(8, 28)
                gap = rng.uniform(3, 10) if rng.random() < 0.15 else 0.0
                blocks.append((z, min(z + length, lay.z_end), height))
                z += length + gap
            for za, zb, height in reversed(blocks):
                _draw_building_block(cv, rng, cam, side, za, zb, height)
        else:
            # Park: a tree line far from the street, over open grass.
            X = side.facade + s * rng.uniform(12, 35)
            zs = np.geomspace(4.0, 300.0, 40)
            top = np.clip(rng.uniform(5, 10) + rng.uniform(-1.5, 1.5, len(zs)), 3.0, 14.0)
            radius = rng.uniform(1.5, 3.5, len(zs))
            col = vegetation_color(rng) * 0.85
            shades = rng.uniform(-10, 10, len(zs))
            pts = np.concatenate([cam.project(X, 0.0, zs), cam.project(X, top, zs)[::-1]])
            cv.poly(pts, col, VEGETATION)
            crowns = cam.project(X, top, zs)
            for (u, v), z, r, sh in zip(crowns, zs, radius, shades):
                cv.circle((u, v), r * cam.f / z, col + sh, VEGETATION)


def _place_objects(cv, rng, cam, lay) -> list[tuple[float, Callable[[], None]]]:
    w, h = cv.w, cv.h
    objs: list[tuple[float, Callable[[], None]]] = []

    def x_limit(s):
        side = lay.sides[s]
        return side.facade - s * 0.4 if side.built else side.facade + s * 8.0

    # Trees along the verge or sidewalk, and in parks.
    for s, side in lay.sides.items():
        n = int(rng.integers(0, 5))
        if side.grass_w > 0:
            X = (side.grass[0] + side.grass[1]) / 2
        else:
            X = side.walk[1] - s * 0.8
        z = rng.uniform(5, 15)
        step = rng.uniform(8, 16)
        for _ in range(n):
            objs.append((z, make_tree(cv, rng, cam, X + rng.uniform(-0.2, 0.2), z)))
            z += step * rng.uniform(0.8, 1.2)
        if not side.built:
            for _ in range(int(rng.integers(2, 6))):
                Xp = side.facade + s * rng.uniform(1.5, 9.0)
                zp = rng.uniform(6, 50)
                objs.append((zp, make_tree(cv, rng, cam, Xp, zp)))
        if side.grass_w > 1.2 and rng.random() < 0.4:
            za = rng.uniform(3, 30)
            # Long along the street: drawn before every other object (sort key far away).
            objs.append((1e6, make_hedge(cv, rng, cam, s, side, za, za + rng.uniform(5, 25))))

    # Poles: the first always carries signs.
    for i in range(int(rng.integers(2, 5))):
        s = int(rng.choice([-1, 1]))
        side = lay.sides[s]
        kind = "sign" if i == 0 or rng.random() < 0.5 else "lamp"
        X = side.curb + s * rng.uniform(0.35, 0.8)
        room = (cam.cx - 0.05 * w) if s < 0 else (0.95 * w - cam.cx)
        z_min = max(4.0, cam.f * abs(X - cam.x0) / max(room, 1.0))
        Z = z_min + rng.uniform(0, 22)
        objs.append((Z, make_pole(cv, rng, cam, X, Z, kind, s)))

    # People, placed in image space so that their size is in a learnable range.
    for _ in range(int(rng.integers(2, 6))):
        for _try in range(30):
            hp = rng.uniform(0.16, 0.5) * h
            up = rng.uniform(0.04, 0.96) * w
            real = rng.uniform(1.55, 1.9)
            Z = real * cam.f / hp
            X = cam.x0 + (up - cam.cx) * Z / cam.f
            lo, hi = sorted((x_limit(-1), x_limit(1)))
            X = float(np.clip(X, lo, hi))
            up = cam.u(X, Z)
            vp = cam.v(0, Z)
            if 0.02 * w < up < 0.98 * w and vp < 1.02 * h:
                objs.append((Z, make_person(cv, rng, up, vp, hp)))
                break

    # Cars: in lanes (some oncoming) or parked at the kerb.
    rl = lay.road[0]
    for _ in range(int(rng.integers(1, 5))):
        for _try in range(30):
            hp = rng.uniform(0.12, 0.42) * h
            Zn = 1.5 * cam.f / hp
            if rng.random() < 0.35:
                s = int(rng.choice([-1, 1]))
                X = lay.sides[s].curb - s * rng.uniform(1.05, 1.3)
                toward = False
            else:
                lane = int(rng.integers(lay.n_lanes))
                X = rl + (lane + 0.5) * lay.lane_w + rng.uniform(-0.3, 0.3)
                toward = lane < lay.n_lanes // 2 and rng.random() < 0.7
            uc = cam.u(X, Zn)
            if 0.03 * w < uc < 0.97 * w and cam.v(0, Zn) < 1.05 * h:
                objs.append((Zn, make_car(cv, rng, cam, X, Zn, toward)))
                break
    return objs


# ----------------------------------------------------------------------------- finishing

def _finish(cv: Canvas, rng) -> np.ndarray:
    """Per-class texture, lighting and sensor noise; colours only, labels untouched."""
    h, w = cv.h, cv.w
    lab = cv.lab
    # Lighting: contrast about mid-grey (a LUT on the drawn colours), then brightness and
    # colour temperature as per-channel gains folded into the texture modulation below.
    contrast = rng.uniform(0.8, 1.15)
    gain = rng.uniform(0.75, 1.2)
    temp = rng.uniform(-0.1, 0.1)
    sensor = rng.uniform(0.01, 0.05)
    blur = rng.uniform(0.4, 0.9) if rng.random() < 0.4 else 0.0
    ramp = np.clip((np.arange(256, dtype=np.float32) - 128.0) * contrast + 128.0, 0, 255)
    base = cv2.LUT(cv.rgb, ramp.astype(np.uint8).reshape(1, 256))
    fine = rng.integers(0, 256, (h, w), dtype=np.uint8).astype(np.float32)
    fine *= 2.0 / 255.0
    fine -= 1.0
    gh = min(64, h)
    gw = max(2, int(round(gh * w / h)))
    mid = cv2.resize(rng.standard_normal((gh, gw), dtype=np.float32), (w, h),
                     interpolation=cv2.INTER_LINEAR)
    ch_ = max(2, min(8, h))
    cw_ = max(2, int(round(ch_ * w / h)))
    # Smooth coarse noise: cubic up to the mid grid, then cheap bilinear to full size.
    coarse = cv2.resize(rng.standard_normal((ch_, cw_), dtype=np.float32), (gw, gh),
                        interpolation=cv2.INTER_CUBIC)
    coarse = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    m = cv2.LUT(lab, _LUT_FINE)
    m += sensor
    m *= fine
    m += cv2.LUT(lab, _LUT_MID) * mid
    m += cv2.LUT(lab, _LUT_COARSE) * coarse
    m += 1.0
    chroma = cv2.LUT(lab, _LUT_CHROMA)
    chroma *= coarse
    chans = []
    for k, g in zip(_CHROMA_RGB, (gain * (1 + temp), gain, gain * (1 - temp))):
        mc = chroma * np.float32(k)
        mc += m
        mc *= np.float32(g)
        chans.append(mc)
    img = cv2.multiply(base, cv2.merge(chans), dtype=cv2.CV_8U)
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur * max(w / 1024, 0.5))
    return img


def _check_args(seed, height, width) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, val in (("height", height), ("width", width)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {val!r}")
        if not _MIN_SIDE <= val <= _MAX_SIDE:
            raise ValueError(f"{name} must be in [{_MIN_SIDE}, {_MAX_SIDE}], got {val}")


def generate_scene(seed: int, height: int = 512, width: int = 1024
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Draw one street scene.

    Returns ``(rgb, labels)``: ``rgb`` uint8 (height, width, 3) in RGB order and ``labels``
    uint8 (height, width) Cityscapes trainIds, all in :data:`SYNTHETIC_CLASS_IDS`. The same
    seed and size always give the same arrays.
    """
    _check_args(seed, height, width)
    seed = int(seed)
    height, width = int(height), int(width)
    rng = np.random.default_rng([seed, 0x5CE7E])
    cv = Canvas(height, width)
    cam = Camera(width * rng.uniform(0.55, 0.72), width * rng.uniform(0.42, 0.58),
                  height * rng.uniform(0.36, 0.47), rng.uniform(1.3, 1.8), 0.0, height, width)
    lay = _sample_layout(rng, cam)
    _draw_sky(cv, rng, cam)
    _draw_skyline(cv, rng, cam)
    _draw_ground(cv, rng, cam, lay)
    _draw_buildings(cv, rng, cam, lay)
    objs = _place_objects(cv, rng, cam, lay)
    for _, draw in sorted(objs, key=lambda o: -o[0]):
        draw()
    rgb = _finish(cv, np.random.default_rng([seed, 0x7E47]))
    return rgb, cv.lab


def generate_batch(seeds: Iterable[int], height: int = 512, width: int = 1024
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Scenes for several seeds, stacked: rgb (N,H,W,3) uint8 and labels (N,H,W) uint8."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    rgb = np.empty((len(seeds), height, width, 3), np.uint8)
    lab = np.empty((len(seeds), height, width), np.uint8)
    for i, s in enumerate(seeds):
        rgb[i], lab[i] = generate_scene(s, height, width)
    return rgb, lab
