"""seg_node's counters per camera and the /diagnostics status built from them."""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

# Every reason a frame can be dropped for; each is reported as dropped_<reason>, zero or not.
DROP_REASONS = ("superseded", "bad_message", "unsupported_encoding", "short_data", "bad_step", "empty",
                "decode_error", "inference_error")
# Frames published with a note: decode_warning (a JPEG the decoder repaired, decode_warnings:=publish),
# downscaled (more than max_input_pixels: run smaller, mask scaled back).
NOTES = ("decode_warning", "downscaled")
WINDOW = 200  # latency samples kept per camera for the percentiles


@dataclass
class CameraStats:
    frames_in: int = 0
    masks_out: int = 0
    drops: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    receipt_ms: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    stamp_ms: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    inference_ms: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    # the node's own work on a frame: decode/resize before inference, mask conversion,
    # resize and publish after it (receipt latency minus inference minus the wait for the worker)
    overhead_ms: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    max_batch: int = 0
    optional_outputs: Counter = field(default_factory=Counter)  # outputs computed, by kind
    camera_info_in: int = 0
    camera_info_out: int = 0
    camera_info_exact: int = 0  # republished infos whose own stamp was the mask's
    reported_in: int = 0  # frames_in / bad drops at the previous diagnostics report
    reported_bad: int = 0

    def snapshot(self) -> dict:
        return {"frames_in": self.frames_in, "masks_out": self.masks_out, "drops": dict(self.drops),
                "notes": dict(self.notes), "max_batch": self.max_batch,
                "optional_outputs": dict(self.optional_outputs), "camera_info_in": self.camera_info_in,
                "camera_info_out": self.camera_info_out, "camera_info_exact": self.camera_info_exact}


def percentile(values, q: float) -> str:
    return f"{np.percentile(np.fromiter(values, float), q):.2f}" if values else "nan"


def camera_status(name: str, st: CameraStats, topics: dict, serving: dict, camera_info: str | None) -> DiagnosticStatus:
    """One camera's status; call with the node's lock held (it moves the 'since last report' marks).

    topics: input_topic, mask_topic (and camera_info_topic); serving: backend, device, precision,
    model, arch and the model-switch state when one is under way; camera_info: None when not
    republished, else the topic it is read from.
    """
    drops = {r: st.drops.get(r, 0) for r in DROP_REASONS}
    bad = sum(v for r, v in drops.items() if r != "superseded")
    new_in, new_bad = st.frames_in - st.reported_in, bad - st.reported_bad
    st.reported_in, st.reported_bad = st.frames_in, bad
    values = {
        **topics,
        "frames_in": st.frames_in,
        "masks_out": st.masks_out,
        "dropped": sum(drops.values()),
        **{f"dropped_{r}": v for r, v in drops.items()},
        **{n: st.notes.get(n, 0) for n in NOTES},
        "latency_receipt_p50_ms": percentile(st.receipt_ms, 50),
        "latency_receipt_p95_ms": percentile(st.receipt_ms, 95),
        "latency_stamp_p50_ms": percentile(st.stamp_ms, 50),
        "latency_stamp_p95_ms": percentile(st.stamp_ms, 95),
        "inference_p50_ms": percentile(st.inference_ms, 50),
        "inference_p95_ms": percentile(st.inference_ms, 95),
        "overhead_p50_ms": percentile(st.overhead_ms, 50),
        "overhead_p95_ms": percentile(st.overhead_ms, 95),
        "max_batch": st.max_batch,
        **serving,
    }
    notes = []
    if camera_info is not None:
        values.update(camera_info_in=st.camera_info_in, camera_info_out=st.camera_info_out,
                      camera_info_exact=st.camera_info_exact)
        if not st.camera_info_in:
            notes.append(f"no camera_info on {camera_info}: none republished")
    if serving.get("model_switch_state") in ("building", "switching", "failed"):
        notes.append(serving["model_switch"])
    if new_bad:
        level, text = DiagnosticStatus.WARN, f"{new_bad} bad frame(s) dropped since the last report"
    elif not new_in:
        level, text = DiagnosticStatus.WARN, f"no frames on {values['input_topic']} since the last report"
    else:
        level, text = DiagnosticStatus.OK, f"{new_in} frame(s) in since the last report"
    if serving.get("model_switch_state") == "failed":  # still serving, on the model it started with
        level = max(level, DiagnosticStatus.WARN)
    return DiagnosticStatus(level=level, name=name, message="; ".join([text, *notes]), hardware_id=name.split(": ")[-1],
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
