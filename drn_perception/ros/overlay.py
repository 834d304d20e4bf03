"""drn-replay's overlay writer: frames blended with their class colours, PNG files and/or a video."""
from __future__ import annotations

import os
import queue
import shutil
import threading
from pathlib import Path

import numpy as np

from drn_perception.ros.replay_plan import ReplayError, ReplayFailed


LEGEND_ROW = 14  # pixels per legend row
LEGEND_SWATCH = 10
LEGEND_FONT_SCALE = 0.4
LEGEND_BACKGROUND = (32, 32, 32)


def legend_width(names) -> int:
    """Width of the legend panel: a swatch and the longest class name."""
    import cv2

    longest = max((cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, LEGEND_FONT_SCALE, 1)[0][0] for n in names), default=0)
    return -(-(4 + LEGEND_SWATCH + 4 + longest + 6) // 4) * 4  # a multiple of 4: video codecs want even sizes


def legend_panel(mask: np.ndarray, names, lut: np.ndarray, height: int, width: int) -> np.ndarray:
    """An RGB panel (height x width) naming the classes in ``mask`` with their colours, the
    largest first; as many rows as fit, the last one saying how many more there are."""
    import cv2

    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = LEGEND_BACKGROUND
    counts = np.bincount(mask.ravel(), minlength=256)[: len(names)]
    present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c]]
    rows = max(1, height // LEGEND_ROW)
    shown = present if len(present) <= rows else present[: rows - 1]
    for r, c in enumerate(shown):
        top = r * LEGEND_ROW + (LEGEND_ROW - LEGEND_SWATCH) // 2
        panel[top: top + LEGEND_SWATCH, 4: 4 + LEGEND_SWATCH] = lut[c]
        cv2.putText(panel, names[c], (4 + LEGEND_SWATCH + 4, r * LEGEND_ROW + LEGEND_ROW - 3),
                    cv2.FONT_HERSHEY_SIMPLEX, LEGEND_FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    if len(shown) < len(present):
        cv2.putText(panel, f"+{len(present) - len(shown)} more", (4, len(shown) * LEGEND_ROW + LEGEND_ROW - 3),
                    cv2.FONT_HERSHEY_SIMPLEX, LEGEND_FONT_SCALE, (200, 200, 200), 1, cv2.LINE_AA)
    return panel


class OverlayWriter:
    """Blends frames with their colour masks on a worker thread: PNG files and/or one video.

    With ``names`` (the class names, indexed like ``palette``) each overlay gets a legend panel
    on its right: the classes in that mask, name and colour, so the colours read without
    knowing the palette. The blended frame itself is left as it is.
    """

    def __init__(self, directory: Path | None, video: Path | None, palette, alpha: float, fps: float,
                 overwrite: bool = False, names=None):
        from drn_perception.ros import conversions as conv

        self.conv = conv
        self.lut = conv.palette_lut(palette)
        self.names = list(names) if names else None
        self.legend_width = legend_width(self.names) if self.names else 0
        self.alpha = alpha
        self.fps = fps
        self.video = None
        self.video_size = None
        self.error: BaseException | None = None
        self.written = 0
        self.overwrite = overwrite
        # Written under temporary names, renamed by commit() after a successful replay.
        self.final_dir, self.final_video = directory, video
        self.directory = self.video_path = None
        if directory:
            if directory.exists() and not overwrite and (not directory.is_dir() or any(directory.iterdir())):
                raise ReplayError(f"overlay folder {directory} already exists; remove it or pass --overwrite")
            self.directory = directory.parent / f".{directory.name}.partial-{os.getpid()}"
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
        if video:
            if video.suffix.lower() not in (".avi", ".mp4"):
                raise ReplayError(f"--overlay-video {video}: use a .avi (MJPG) or .mp4 (mp4v) file name")
            if video.exists() and not overwrite:
                raise ReplayError(f"overlay video {video} already exists; remove it or pass --overwrite")
            video.parent.mkdir(parents=True, exist_ok=True)
            self.video_path = video.parent / f".{video.stem}.partial-{os.getpid()}{video.suffix}"
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, index: int, image_msg, mask: np.ndarray) -> None:
        if self.error is not None:
            raise ReplayFailed(f"writing overlays failed: {self.error}")
        self.queue.put((index, image_msg, mask))

    def _run(self):
        import cv2

        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            try:
                index, msg, mask = item
                rgb = self.conv.blend(self.conv.to_rgb(msg), self.conv.colorize(mask, self.lut), self.alpha)
                if self.names:
                    rgb = np.hstack([rgb, legend_panel(mask, self.names, self.lut, rgb.shape[0], self.legend_width)])
                bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
                if self.directory:
                    path = self.directory / f"frame_{index:06d}.png"
                    if not cv2.imwrite(str(path), bgr):
                        raise OSError(f"cannot write {path}")
                if self.video_path:
                    self._video_frame(bgr)
                self.written += 1
            except BaseException as exc:  # noqa: BLE001 - reported by put()/close()
                self.error = exc

    def _video_frame(self, bgr):
        import cv2

        if self.video is None:
            h, w = bgr.shape[:2]
            self.video_size = (w, h)
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.video_path.suffix.lower() == ".avi" else "mp4v"))
            self.video = cv2.VideoWriter(str(self.video_path), fourcc, self.fps, self.video_size)
            if not self.video.isOpened():
                raise OSError(f"OpenCV cannot write video {self.video_path}")
        if bgr.shape[1::-1] != self.video_size:
            bgr = cv2.resize(bgr, self.video_size, interpolation=cv2.INTER_AREA)
        self.video.write(bgr)

    def close(self) -> int:
        """Finish the queued overlays; ReplayError if any failed."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if self.video is not None:
            self.video.release()
            self.video = None
        if self.error is not None:
            raise ReplayFailed(f"writing overlays failed: {self.error}")
        return self.written

    def commit(self) -> None:
        if self.directory:
            if self.final_dir.exists():
                shutil.rmtree(self.final_dir) if self.final_dir.is_dir() else self.final_dir.unlink()
            os.replace(self.directory, self.final_dir)
            self.directory = None
        if self.video_path:
            if self.video_path.exists():
                os.replace(self.video_path, self.final_video)
            self.video_path = None

    def discard(self) -> None:
        try:
            self.close()
        except ReplayError:
            pass
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self.video_path:
            self.video_path.unlink(missing_ok=True)
