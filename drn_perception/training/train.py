"""drn-train: train a DRN segmentation model (reference recipe by default).

Datasets: the authors' list layout, native Cityscapes (trainId or labelId files) or the built-in
synthetic street scenes. Runs on CPU, on one GPU (mixed precision) and on several GPUs or
nodes through torchrun (DistributedDataParallel + SyncBatchNorm). Every epoch ends with an
atomic checkpoint (<out>/last.pt); ``--resume`` continues exactly where it stopped. The best
model by validation mIoU is kept as <out>/best.pt (weights and model info only).

Examples::

    drn-train --dataset synthetic --out runs/synth --arch drn_c_26 --width 0.25 --crop-size 256
    torchrun --nproc_per_node 4 -m drn_perception.training.train --data-dir cityscapes \\
        --out runs/drn_c_26 --pretrained drn_c_26-ddedf421.pth --batch-size 2
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from drn_perception import cli
from drn_perception.cli import UserError
from drn_perception.training.datasets import (add_dataset_args, build_dataset, class_config, eval_classes,
                                              resolve_dataset_kind, size_arg)
from drn_perception.training.state import (METRICS_CSV, RECIPE_KEYS, append_csv, jsonable_args, rewrite_csv,
                                           rng_state, seed_everything, set_rng_state)

CHECKPOINT_LAST = "last.pt"
CHECKPOINT_BEST = "best.pt"


# --------------------------------------------------------------------------- arguments

def build_parser() -> cli.Parser:
    from drn_perception.models.drn import ARCHS

    p = cli.Parser(prog="drn-train", description=__doc__.split("\n\n")[0], formatter_class=cli.DefaultsFormatter)
    add_dataset_args(p, train=True)
    g = p.add_argument_group("model")
    g.add_argument("--arch", default="drn_c_26", choices=ARCHS, metavar="ARCH",
                   help=f"DRN variant: {', '.join(ARCHS)}")
    g.add_argument("--width", type=float, default=1.0, help="channel width multiplier in (0, 4]; 1.0 = reference")
    g.add_argument("--pretrained", type=Path, metavar="FILE",
                   help="ImageNet DRN checkpoint to initialise the backbone from (local file)")
    g.add_argument("--init", type=Path, metavar="FILE",
                   help="segmentation checkpoint (ours or the authors') to start from, e.g. to fine-tune; "
                        "same arch, width and number of classes")
    g = p.add_argument_group("recipe (defaults: the authors' Cityscapes recipe)")
    g.add_argument("--epochs", type=int, default=500, help="passes over the training set")
    g.add_argument("--batch-size", type=int, default=8, help="images per process and step")
    g.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="optimiser")
    g.add_argument("--lr", type=float, default=0.01, help="base learning rate")
    g.add_argument("--lr-mode", choices=["poly", "step"], default="poly",
                   help="poly: lr*(1-it/total)^0.9 per iteration; step: lr*0.1^(epoch//step)")
    g.add_argument("--step", type=int, default=100, help="epochs per step of --lr-mode step")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="L2 weight decay")
    g.add_argument("--crop-size", type=size_arg, default=(896, 896), metavar="N|HxW", help="random crop size")
    g.add_argument("--random-scale", type=float, default=2.0, help="scale drawn from [1/s, s]; <= 1 disables")
    g.add_argument("--random-rotate", type=float, default=10.0, help="max rotation in degrees; 0 disables")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, required=True, help="folder for checkpoints, metrics.csv, tensorboard/")
    g.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                   help="continue from CHECKPOINT (no value: <out>/last.pt)")
    g.add_argument("--seed", type=int, default=0, help="seed of weights, augmentation and sample order")
    g.add_argument("--eval-every", type=int, default=1, metavar="N",
                   help="validate every N epochs and after the last (0: never)")
    g.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per process")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:I")
    g.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="mixed precision: fp16 + GradScaler on CUDA, bf16 on CPU (cores with AMX or "
                        "AVX512-BF16 make it several times faster); auto = on for CUDA, off on CPU")
    g.add_argument("--no-sync-bn", action="store_true", help="keep per-GPU BatchNorm under torchrun")
    g.add_argument("--deterministic", action="store_true", help="deterministic cuDNN algorithms (slower)")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard event files")
    return p


def check_args(args) -> None:
    """Every check that needs no data and no model: run before anything slow starts."""
    if args.epochs < 1 or args.batch_size < 1:
        raise UserError("--epochs and --batch-size must be >= 1")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if not 0.0 < args.width <= 4.0:
        raise UserError(f"--width must be in (0, 4], got {args.width:g}")
    if args.lr < 0:
        raise UserError(f"--lr must be >= 0, got {args.lr:g}")
    if args.eval_every < 0 or args.workers < 0 or args.step < 1:
        raise UserError("--eval-every and --workers must be >= 0, --step >= 1")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.device not in ("auto", "cpu") and not (args.device == "cuda" or (
            args.device.startswith("cuda:") and args.device[5:].isdigit())):
        raise UserError(f"--device must be auto, cpu or cuda[:i], got {args.device!r}")
    if args.pretrained and args.init:
        raise UserError("give --pretrained (backbone) or --init (whole model), not both")
    for flag, path in (("--pretrained", args.pretrained), ("--init", args.init), ("--classes", args.classes)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{flag} {path}: file not found")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise UserError(f"--data-dir {args.data_dir}: no such folder")
    if args.dataset not in (None, "synthetic") and args.data_dir is None:
        raise UserError(f"--dataset {args.dataset} needs --data-dir")
    if resolve_dataset_kind(args) == "synthetic":
        for flag, n in (("--synthetic-train", args.synthetic_train), ("--synthetic-val", args.synthetic_val)):
            if n < 1:
                raise UserError(f"{flag} must be >= 1, got {n}")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if args.synthetic_train // world < args.batch_size:
            raise UserError(f"{args.synthetic_train} training images are fewer than one batch of {args.batch_size} "
                            f"per process ({world} processes)")


# --------------------------------------------------------------------------- model helpers

def normalise(images, mean, std):
    """uint8 (N, H, W, 3) tensor -> float (N, 3, H, W), as SegmentationPipeline does.

    Made contiguous (NCHW): with the permuted, channels-last strides torch 2.13's CPU
    convolution backward crashes (double free / segfault) on these models.
    """
    x = images.permute(0, 3, 1, 2).contiguous().float() / 255.0
    return (x - mean) / std


def confusion_on_device(pred, target, num_classes: int):
    import torch

    keep = target != 255
    t = target[keep].long()
    if t.numel() and int(t.max()) >= num_classes:
        raise UserError(f"label {int(t.max())} is outside 0..{num_classes - 1} (and not 255)")
    idx = t * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def amp_dtype(device):
    """The mixed-precision type of --amp: fp16 (with loss scaling) on CUDA, bf16 on CPU."""
    import torch

    return torch.float16 if device.type == "cuda" else torch.bfloat16


def validate(model, dataset, device, num_classes: int, mean, std, rank: int = 0, world: int = 1,
             amp: bool = False, workers: int = 0, progress: bool = False) -> np.ndarray:
    """Confusion matrix (int64 numpy) of ``model`` over the whole ``dataset`` (sharded by rank,
    summed over ranks)."""
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    shard = Subset(dataset, list(range(rank, len(dataset), world)))
    loader = DataLoader(shard, batch_size=1, shuffle=False, num_workers=workers)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for images, labels in tqdm(loader, desc="validate", disable=not progress, leave=False,
                                   mininterval=1 if sys.stderr.isatty() else 30):
            images, labels = images.to(device), labels.to(device)
            with torch.autocast(device.type, dtype=amp_dtype(device), enabled=amp):
                logits = model(normalise(images, mean, std))  # any H, W: DRNSeg crops to the input, as the authors' code
            conf += confusion_on_device(logits.argmax(1), labels, num_classes)
    model.train(was_training)
    if world > 1:
        dist.all_reduce(conf)
    return conf.cpu().numpy()


# --------------------------------------------------------------------------- training

def lr_factor(args, iters_per_epoch: int):
    total = max(1, args.epochs * iters_per_epoch)
    if args.lr_mode == "poly":
        return lambda it: (1.0 - min(it, total - 1) / total) ** 0.9
    return lambda it: 0.1 ** ((it // iters_per_epoch) // args.step)


def run(args) -> dict:
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm import tqdm

    from drn_perception.data.transforms import training_transform
    from drn_perception.model_info import ModelInfo
    from drn_perception.models.checkpoints import (FORMAT, load_backbone, load_checkpoint, read_checkpoint,
                                                   save_checkpoint)
    from drn_perception.models.segmentation import DRNSeg
    from drn_perception.training.metrics import format_table, mean_iou, pixel_accuracy

    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    # ---- processes and device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    want_cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available here")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        index = torch.device(args.device).index if args.device.startswith("cuda") else None
        device = torch.device("cuda", local_rank if distributed else index or 0)
        torch.cuda.set_device(device)  # before NCCL starts, so each process owns one GPU
        torch.backends.cudnn.benchmark = not args.deterministic
        torch.backends.cudnn.deterministic = args.deterministic
    else:
        device = torch.device("cpu")
    if distributed:
        dist.init_process_group("nccl" if want_cuda else "gloo")
    rank = dist.get_rank() if distributed else 0
    amp = args.amp == "on" or (device.type == "cuda" and args.amp == "auto")
    if amp and device.type == "cpu" and not torch.backends.mkldnn.is_available():
        raise UserError("--amp on on CPU needs PyTorch with oneDNN (bf16); use --amp off")
    main_proc = rank == 0
    seed_everything(args.seed + rank)
    resume_path = resume_obj = None
    if args.resume:  # read first: a wrong path fails before any data is prepared
        resume_path = args.out / CHECKPOINT_LAST if args.resume == "auto" else Path(args.resume)
        resume_obj = read_checkpoint(resume_path)
        if resume_obj.get("format") != FORMAT or "training" not in resume_obj:
            raise UserError(f"{resume_path} is not a drn-train checkpoint with training state (use --pretrained "
                            "for an ImageNet backbone)")

    kind = resolve_dataset_kind(args)
    classes = class_config(args)
    num_classes = len(classes.classes)
    # ---- model (before the data: a checkpoint that does not fit fails before scenes are generated)
    model = DRNSeg(args.arch, num_classes, width=args.width)
    if args.pretrained:
        load_backbone(model, args.pretrained)
    if args.init:
        start, start_info = load_checkpoint(args.init)
        got = (start_info["arch"], float(start_info.get("width", 1.0)), start.num_classes)
        if got != (args.arch, args.width, num_classes):
            raise UserError(f"--init {args.init} is {got[0]} width {got[1]:g} with {got[2]} classes; this run is "
                            f"{args.arch} width {args.width:g} with {num_classes}")
        model.load_state_dict(start.state_dict())

    # ---- data
    show = main_proc and not args.no_progress
    transform = training_transform(args.crop_size, args.random_scale, args.random_rotate, hflip=not args.no_flip)
    if kind == "synthetic" and args.synthetic_cache not in ("memory", "none") and distributed:
        # One process fills the on-disk cache; the others then read it.
        if main_proc:
            build_dataset(args, kind, "train", None, args.synthetic_train, args.workers, progress=show)
            build_dataset(args, kind, "val", None, args.synthetic_val, args.workers, progress=show)
        dist.barrier()
    train_set = build_dataset(args, kind, args.train_split if kind != "synthetic" else "train", transform,
                              getattr(args, "synthetic_train", None), args.workers, progress=show,
                              num_classes=num_classes)
    val_set = None
    if args.eval_every:
        val_set = build_dataset(args, kind, args.val_split if kind != "synthetic" else "val", None,
                                args.synthetic_val, args.workers, progress=show, num_classes=num_classes)
    mean_t = torch.tensor(train_set.mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(train_set.std, device=device).view(1, 3, 1, 1)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed,
                                 drop_last=True)
    loader_gen = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                        drop_last=True, pin_memory=device.type == "cuda", generator=loader_gen)
    iters_per_epoch = len(loader)
    if iters_per_epoch == 0:
        raise UserError(f"{len(train_set)} training images are fewer than one batch of {args.batch_size} "
                        f"per process ({world} processes)")
    miou_classes = eval_classes(kind, num_classes)

    # ---- optimiser, schedule
    model.to(device)
    raw_model = model
    if distributed:
        if device.type == "cuda" and not args.no_sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            raw_model = model
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    params = list(raw_model.optim_parameters())
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(args, iters_per_epoch))
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")  # bf16 needs no loss scaling
    criterion = nn.NLLLoss(ignore_index=255)
    info = ModelInfo(arch=args.arch, classes=classes.classes, palette=classes.palette, mean=train_set.mean,
                     std=train_set.std, width=args.width).to_dict()

    # ---- resume
    start_epoch, best, best_epoch, elapsed = 0, -1.0, 0, 0.0
    out = args.out
    if resume_obj is not None:
        path, obj = resume_path, resume_obj
        try:
            raw_model.load_state_dict(obj["state_dict"], strict=True)
        except RuntimeError as exc:
            raise UserError(f"{path} does not fit {args.arch} width {args.width}: {str(exc).splitlines()[0]}") from None
        t = obj["training"]
        optimizer.load_state_dict(t["optimizer"])
        scheduler.load_state_dict(t["scheduler"])
        if t.get("scaler") and amp:
            scaler.load_state_dict(t["scaler"])
        loader_gen.set_state(t["loader_generator"])
        set_rng_state(t["rng"])
        start_epoch, best, best_epoch, elapsed = t["epoch"], t["best_miou"], t["best_epoch"], t["elapsed"]
        saved = t.get("args", {})
        now = jsonable_args(args)
        changed = [k for k in RECIPE_KEYS if k in saved and saved[k] != now.get(k)]
        if changed and main_proc:
            print(f"drn-train: warning: resuming {path} with changed {', '.join(changed)}", file=sys.stderr)
        if main_proc:
            print(f"resumed {path} after epoch {start_epoch}")
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        rewrite_csv(out / METRICS_CSV, start_epoch)
    writer = None
    if main_proc and not args.no_tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_epoch * iters_per_epoch if start_epoch else None)

    if main_proc:
        n_params = sum(p.numel() for p in raw_model.parameters())
        mapped = " (Cityscapes labelIds -> trainIds)" if getattr(train_set, "labels_kind", "") == "labelIds" else ""
        print(f"drn-train: {args.arch} width {args.width} ({n_params:,} parameters), {kind} "
              f"{len(train_set)} train / {len(val_set) if val_set else 0} val images{mapped}, {num_classes} classes, "
              f"{world} process(es) on {device}{f' with AMP ({amp_dtype(device)})' if amp else ''}, "
              f"{iters_per_epoch} iterations/epoch",
              flush=True)

    last_metrics: dict = {}
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), device=device)
        bar = tqdm(total=iters_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not main_proc or args.no_progress,
                   mininterval=1 if sys.stderr.isatty() else 30, dynamic_ncols=True)
        for i, (images, labels) in enumerate(loader):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True).long()
            with torch.autocast(device.type, dtype=amp_dtype(device), enabled=amp):
                logits = model(normalise(images, mean_t, std_t))
            loss = criterion(torch.log_softmax(logits.float(), dim=1), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach()
            bar.update(1)
            step = epoch * iters_per_epoch + i + 1
            if writer is not None and (step % 10 == 0 or i == iters_per_epoch - 1):
                value = loss.item()
                writer.add_scalar("train/loss", value, step)
                writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", refresh=False)
        bar.close()
        if distributed:
            dist.all_reduce(loss_sum)
        train_loss = loss_sum.item() / (iters_per_epoch * world)
        row = {"epoch": epoch + 1, "iterations": (epoch + 1) * iters_per_epoch,
               "lr": optimizer.param_groups[0]["lr"], "train_loss": f"{train_loss:.6f}", "val_miou": "",
               "val_pixel_accuracy": ""}
        if not math.isfinite(train_loss):
            raise UserError(f"training diverged at epoch {epoch + 1} (loss {train_loss}); lower --lr")
        improved = False
        if val_set is not None and ((epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs):
            conf = validate(raw_model, val_set, device, num_classes, mean_t, std_t, rank, world, amp,
                            workers=min(args.workers, 1), progress=main_proc and not args.no_progress)
            miou = mean_iou(conf, miou_classes)
            row["val_miou"], row["val_pixel_accuracy"] = f"{miou:.6f}", f"{pixel_accuracy(conf):.6f}"
            last_metrics = {"miou": miou, "confusion": conf, "epoch": epoch + 1}
            if writer is not None:
                writer.add_scalar("val/miou", miou, (epoch + 1) * iters_per_epoch)
                iou = np.diag(conf) / np.maximum(conf.sum(0) + conf.sum(1) - np.diag(conf), 1)
                for c in (miou_classes if miou_classes is not None else range(num_classes)):
                    writer.add_scalar(f"val/iou/{classes.classes[c]}", iou[c], (epoch + 1) * iters_per_epoch)
            improved = miou > best
            if improved:
                best, best_epoch = miou, epoch + 1
        elif val_set is None:
            improved, best_epoch = True, epoch + 1
        elapsed += time.time() - t0
        row["epoch_seconds"], row["elapsed_seconds"] = f"{time.time() - t0:.1f}", f"{elapsed:.1f}"
        if main_proc:
            # The row goes first: a run killed before the checkpoint lands rewrites it on resume.
            append_csv(out / METRICS_CSV, row)
            if improved:
                save_checkpoint(out / CHECKPOINT_BEST, raw_model, info,
                                metrics={"miou": float(best), "epoch": best_epoch, "split": "val",
                                         "miou_classes": miou_classes},
                                args=jsonable_args(args))
            training = {"epoch": epoch + 1, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if amp else None, "loader_generator": loader_gen.get_state(),
                        "rng": rng_state(), "best_miou": float(best), "best_epoch": best_epoch,
                        "elapsed": float(elapsed), "args": jsonable_args(args)}
            save_checkpoint(out / CHECKPOINT_LAST, raw_model, info, training=training)
            msg = f"epoch {epoch + 1}/{args.epochs}: loss {train_loss:.4f}"
            if row["val_miou"]:
                msg += f", val mIoU {float(row['val_miou']):.4f} (best {best:.4f} @ {best_epoch})"
            print(msg + f", {row['epoch_seconds']} s", flush=True)
            if writer is not None:
                writer.flush()
    if main_proc and last_metrics:
        print(format_table(last_metrics["confusion"], classes.classes, miou_classes))
    if writer is not None:
        writer.close()
    if distributed:
        dist.destroy_process_group()
    return {"best_miou": best, "best_epoch": best_epoch, "last": str(out / CHECKPOINT_LAST),
            "best": str(out / CHECKPOINT_BEST), **({"last_miou": last_metrics["miou"]} if last_metrics else {})}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from drn_perception.data.cityscapes import DatasetError, worker_error
    from drn_perception.models.checkpoints import CheckpointError

    try:
        result = run(args)
    except DatasetError as exc:  # also from a DataLoader worker: a file found bad when a batch read it
        return cli.fail("drn-train", worker_error(exc))
    except (UserError, CheckpointError) as exc:
        return cli.fail("drn-train", exc)
    except KeyboardInterrupt:
        print(f"drn-train: interrupted; continue with --resume (from {args.out / CHECKPOINT_LAST})", file=sys.stderr)
        return 130
    if result["best_epoch"]:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
