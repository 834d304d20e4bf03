"""The dataset options drn-train and drn-eval share (--dataset, --data-dir, --labels, the
synthetic scenes' size and count), and opening the chosen split."""
from __future__ import annotations

import argparse
from pathlib import Path

from drn_perception.cli import UserError


def size_arg(text: str) -> tuple[int, int]:
    """'896' -> (896, 896); '256x512' -> (256, 512) (height x width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"expected N or HxW with sides >= 8, got {text!r}")
    return parts[0], parts[1]


def add_dataset_args(p: argparse.ArgumentParser, train: bool) -> None:
    g = p.add_argument_group("dataset")
    g.add_argument("--dataset", choices=["list", "cityscapes", "synthetic"],
                   help="folder layout (default: recognised from --data-dir; synthetic when no --data-dir)")
    g.add_argument("--data-dir", type=Path, help="dataset folder (list layout or Cityscapes root)")
    g.add_argument("--classes", type=Path, metavar="YAML",
                   help="class config (default: config/cityscapes.yaml, the 19 Cityscapes trainIds)")
    g.add_argument("--labels", choices=["auto", "trainIds", "labelIds"], default="auto",
                   help="what the label files hold: trainIds, or Cityscapes labelIds (0..33, read through the "
                        "official id -> trainId table); auto: labelIds for files named *_labelIds.png (Cityscapes "
                        "layout: the _labelTrainIds files where they exist, else the _labelIds ones)")
    if train:
        g.add_argument("--synthetic-size", type=size_arg, default=(256, 512), metavar="HxW",
                       help="size of the generated scenes")
    else:
        g.add_argument("--synthetic-size", type=size_arg, metavar="HxW",
                       help="size of the generated scenes (default: the size the model was trained at, "
                            "as its checkpoint or sidecar records it, else 256x512)")
    g.add_argument("--synthetic-cache", default="memory", metavar="memory|none|DIR",
                   help="keep generated scenes in memory, generate them at every read (none), or cache them "
                        "as .npy files in DIR")
    if train:
        g.add_argument("--train-split", default="train", help="split of a list or Cityscapes dataset to train on")
        g.add_argument("--val-split", default="val", help="split to validate on")
        g.add_argument("--synthetic-train", type=int, default=2000, metavar="N", help="generated training scenes")
        g.add_argument("--synthetic-val", type=int, default=200, metavar="N", help="generated validation scenes")
    else:
        g.add_argument("--split", default="val", help="split to evaluate (synthetic: train, val or test)")
        g.add_argument("--synthetic-num", type=int, default=200, metavar="N", help="scenes of the synthetic split")


def resolve_dataset_kind(args) -> str:
    from drn_perception.data.cityscapes import detect_layout

    if args.dataset == "synthetic" or (args.dataset is None and args.data_dir is None):
        if args.labels != "auto":
            raise UserError(f"--labels {args.labels} applies to --data-dir datasets (generated scenes are trainIds)")
        return "synthetic"
    if args.data_dir is None:
        raise UserError(f"--dataset {args.dataset} needs --data-dir")
    split = getattr(args, "train_split", None) or getattr(args, "split")
    return args.dataset or detect_layout(args.data_dir, split)


def build_dataset(args, kind: str, split: str, transform=None, num: int | None = None, workers: int = 0,
                  progress: bool = False, num_classes: int | None = None):
    """One split of the chosen dataset (an object with mean, std, set_epoch, __getitem__);
    ``progress``: a progress bar while scenes are generated; ``num_classes``: label files are
    checked to hold only 0..num_classes-1 and 255 (a sample when opened, every file when read)."""
    if kind == "synthetic":
        from drn_perception.data.synthetic_dataset import SyntheticScenes

        cache = None if args.synthetic_cache == "none" else args.synthetic_cache
        h, w = args.synthetic_size
        return SyntheticScenes(split, num, h, w, transform=transform, seed=getattr(args, "seed", 0), cache=cache,
                               workers=workers, progress=progress)
    from drn_perception.data.cityscapes import cityscapes_dataset, list_dataset

    reader = list_dataset if kind == "list" else cityscapes_dataset
    return reader(args.data_dir, split, transform=transform, seed=getattr(args, "seed", 0), labels=args.labels,
                  num_classes=num_classes)


def class_config(args):
    from drn_perception.model_info import ClassConfig, cityscapes

    return ClassConfig.from_yaml(args.classes) if args.classes else cityscapes()


def eval_classes(kind: str, num_classes: int):
    """Class ids the mIoU is averaged over: the generator's classes for synthetic data,
    otherwise every class that occurs or is predicted."""
    if kind != "synthetic":
        return None
    from drn_perception.data.synthetic import SYNTHETIC_CLASS_IDS

    return [c for c in SYNTHETIC_CLASS_IDS if c < num_classes]
