"""What a drn-train run keeps between epochs besides the weights and the optimiser: the random
number generators' states (so a resumed run continues exactly), its arguments, and metrics.csv."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np

METRICS_CSV = "metrics.csv"
CSV_FIELDS = ["epoch", "iterations", "lr", "train_loss", "val_miou", "val_pixel_accuracy", "epoch_seconds",
              "elapsed_seconds"]


def rng_state() -> dict:
    import torch

    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    random.setstate((state["python_version"], tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def jsonable_args(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in vars(args).items()}


# Arguments that change the optimisation path; a resumed run warns when they differ.
RECIPE_KEYS = ("dataset", "data_dir", "arch", "width", "epochs", "batch_size", "optimizer", "lr", "lr_mode", "step",
               "momentum", "weight_decay", "crop_size", "random_scale", "random_rotate", "no_flip", "seed",
               "synthetic_size", "synthetic_train", "train_split")


def rewrite_csv(path: Path, upto_epoch: int) -> None:
    """Keep only the rows of epochs <= upto_epoch (a resumed run rewrites the rest)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= upto_epoch]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
