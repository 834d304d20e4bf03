"""drn-replay, step 5: what the report says. The masks scored against the bag's ground truth,
latency percentiles, frame sizes, the notes, and the printed summary."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from drn_perception.ros import bagio
from drn_perception.ros.replay_plan import ReplayError, ReplayFailed

# Header stamps further than this from the wall clock at publish make the node's stamp latency meaningless.
STALE_STAMP_S = 1.0
DEMO_MODEL_NOTE = ("demo model trained on generated street scenes; not for a real camera — see docs/training.md "
                   "(its mIoU here says how well it knows the generator's scenes, not real streets)")


def is_demo_model(model) -> bool:
    """Whether ``model`` is the package's shipped demo model (drn_perception/assets)."""
    if model is None:
        return False
    from drn_perception.default_model import default_model_path

    try:
        return Path(model).resolve() == Path(default_model_path()).resolve()
    except OSError:
        return False


def frame_sizes(plan, mask_sizes: dict) -> dict:
    """The report's frame_size (the one size of every frame, else None) and frame_sizes
    ({"HxW": frames}): from the bag for raw images, from the received masks (which are at input
    size) for compressed ones, whose size only shows once decoded."""
    sizes = plan.sizes or mask_sizes
    out = {"frame_size": list(next(iter(sizes))) if len(sizes) == 1 else None,
           "frame_sizes": {f"{h}x{w}": n for (h, w), n in sorted(sizes.items())}}
    if not plan.sizes:
        out["frame_sizes_from"] = "masks"
    return out


def percentiles(values) -> dict:
    """p50/p95/p99/mean/max in milliseconds of ``values`` in seconds (None for each when empty)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    v = np.asarray(values, np.float64) * 1e3
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99)), "mean": float(v.mean()), "max": float(v.max())}


def mask_array(msg) -> np.ndarray:
    """The (height, width) uint8 view of a mono8 mask message."""
    if msg.encoding not in ("mono8", "8UC1"):
        raise ReplayFailed(f"the node published a {msg.encoding} mask; expected mono8")
    return np.asarray(msg.data, np.uint8)[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width]


class Scorer:
    """Received masks against the bag's ground-truth labels: one confusion matrix over the run,
    with one extra class for the mask's 255 (unknown), whose pixels count as misses of the true class."""

    def __init__(self, classes, labels_topic: str):
        self.classes = classes
        self.labels_topic = labels_topic
        self.num_classes = len(classes.classes)
        self.conf = np.zeros((self.num_classes + 1, self.num_classes + 1), np.int64)
        self.present = np.zeros(self.num_classes, bool)  # classes seen in the ground truth
        self.frames = 0

    def add(self, frame_index: int, mask: np.ndarray, labels_raw: bytes) -> None:
        from drn_perception.training.metrics import confusion_matrix

        lab = bagio.deserialize(labels_raw, bagio.IMAGE)
        gt = np.asarray(lab.data, np.uint8)[: lab.step * lab.height].reshape(lab.height, lab.step)[:, : lab.width]
        if mask.shape != gt.shape:
            raise ReplayFailed(f"mask for frame {frame_index} is {mask.shape[1]}x{mask.shape[0]} but its "
                               f"labels are {gt.shape[1]}x{gt.shape[0]}")
        n = self.num_classes
        bad = gt[(gt >= n) & (gt != 255)]
        if bad.size:
            raise ReplayError(f"labels of frame {frame_index} on {self.labels_topic} hold class "
                              f"{int(bad[0])}, but the class config has {n} classes")
        pred = np.where(mask >= n, n, mask)
        self.conf += confusion_matrix(pred, gt, n + 1)
        seen = np.unique(gt)
        self.present[seen[seen < n]] = True
        self.frames += 1

    def metrics(self) -> dict:
        from drn_perception.training.metrics import mean_iou, per_class_iou, pixel_accuracy

        names = self.classes.classes
        ids = [int(c) for c in np.flatnonzero(self.present)]
        iou = per_class_iou(self.conf)[: self.num_classes]
        return {
            "frames_evaluated": self.frames,
            "miou": mean_iou(self.conf, ids) if ids else None,
            "miou_classes": [names[c] for c in ids],
            "pixel_accuracy": pixel_accuracy(self.conf),
            "per_class_iou": {names[c]: (None if np.isnan(iou[c]) else float(iou[c])) for c in ids},
            "note": "mIoU over the classes present in the labels; unknown (255) mask pixels count as misses",
        }


def add_notes(result: dict) -> None:
    """The report's notes: header stamps too old for the node's stamp latency (whose values are
    then dropped), and the demo model. Takes ``stamp_age_s`` out of ``result``."""
    notes = result.setdefault("notes", [])
    age = result.pop("stamp_age_s")
    if age is not None and abs(age) > STALE_STAMP_S:
        # The node's latency_stamp_* is "mask published minus header stamp": with the bag's
        # old stamps it measures the bag's age, not the node. latency_ms is the replay's own.
        diagnostics = result["node"]["diagnostics"]
        for k in sorted(k for k in diagnostics if k.startswith("latency_stamp_")):
            del diagnostics[k]
        notes.append(f"the bag's header stamps are {age:.0f} s {'old' if age > 0 else 'in the future'}, so the "
                     "node's latency_stamp_* (mask published minus header stamp) would measure that, not the node: "
                     "omitted; latency_ms is publish -> mask received")
    if result["node"]["demo_model"]:
        notes.append(DEMO_MODEL_NOTE)


def format_summary(r: dict) -> str:
    """The report as the few lines drn-replay prints."""
    lat = r["latency_ms"]
    lines = [
        f"replayed {r['in_bag']} ({r['image_topic']}, {r['mode']}"
        + (f" x{r['rate_factor']:g}" if r["rate_factor"] else "")
        + (f", {r['in_flight']} in flight" if (r.get("in_flight") or 1) > 1 else "") + f") -> {r['out_bag']}",
        f"frames published {r['frames_published']}, masks received {r['masks_received']}, dropped {r['dropped']}"
        + (f" (late {r['late_masks']})" if r["late_masks"] else "")
        + (f"; sent again after the node replaced them: {r['frames_resent']}" if r.get("frames_resent") else ""),
    ]
    if lat["p50"] is not None:
        lines.append(f"latency publish->mask ms: p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
                     f"max {lat['max']:.1f}")
    if r["throughput_fps"]:
        lines.append(f"throughput {r['throughput_fps']:.2f} masks/s")
    diag = (r.get("node") or {}).get("diagnostics") or {}
    if "inference_p50_ms" in diag:
        lines.append(f"node ({diag.get('backend', '?')}): inference p50 {diag['inference_p50_ms']} ms, "
                     f"its own work per frame (decode, resize, mask, publish) p50 {diag.get('overhead_p50_ms', '?')} "
                     f"ms, p95 {diag.get('overhead_p95_ms', '?')} ms")
    m = r.get("metrics")
    if m and m["miou"] is not None:
        per = ", ".join(f"{k} {v:.3f}" for k, v in m["per_class_iou"].items() if v is not None)
        lines.append(f"mIoU {m['miou']:.4f} over {len(m['miou_classes'])} classes ({m['frames_evaluated']} frames); "
                     f"pixel accuracy {m['pixel_accuracy']:.4f}")
        lines.append(f"IoU: {per}")
    if r.get("overlays_written"):
        lines.append(f"overlays written: {r['overlays_written']}")
    if r.get("frame_sizes") and len(r["frame_sizes"]) > 1:
        lines.append("frame sizes: " + ", ".join(f"{k} ({n})" for k, n in r["frame_sizes"].items()))
    lines += [f"note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines)
