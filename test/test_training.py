"""drn-train and drn-eval on tiny CPU runs: learning happens, resume is exact, errors are clear."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from drn_perception.data.synthetic import SYNTHETIC_CLASS_IDS
from drn_perception.data.synthetic_dataset import SyntheticScenes
from drn_perception.models.checkpoints import load_checkpoint, read_checkpoint
from drn_perception.training import evaluate, train
from drn_perception.training.metrics import ConfusionMatrix

REPO = Path(__file__).resolve().parent.parent
TINY = ["--dataset", "synthetic", "--synthetic-size", "64x128", "--crop-size", "64", "--width", "0.125",
        "--batch-size", "4", "--workers", "0", "--threads", "1", "--no-progress"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_short_run_lowers_loss_and_beats_chance(tmp_path, capsys):
    out = tmp_path / "run"
    args = TINY + ["--synthetic-train", "32", "--synthetic-val", "6", "--epochs", "4", "--optimizer", "adam",
                   "--lr", "0.01", "--random-scale", "1.25", "--random-rotate", "5", "--out", str(out)]
    assert train.main(args) == 0
    rows = read_csv(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < 0.8 * float(rows[0]["train_loss"])
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    # Chance level: predict the most frequent class everywhere, and the untrained network.
    val = SyntheticScenes("val", 6, 64, 128)
    labels = np.stack([val[i][1] for i in range(len(val))])
    majority = ConfusionMatrix(19)
    majority.update(np.full_like(labels, np.bincount(labels.ravel()).argmax()), labels)
    chance = majority.miou(SYNTHETIC_CLASS_IDS)

    assert evaluate.main([str(out / "best.pt"), "--synthetic-num", "6", "--synthetic-size", "64x128",
                          "--split", "val", "--no-progress", "--json", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    best = max(float(r["val_miou"]) for r in rows)
    assert result["miou"] == pytest.approx(best, abs=1e-3)  # same frames as validation
    assert best > 2 * chance, (best, chance)
    assert len(result["per_class_iou"]) == len(SYNTHETIC_CLASS_IDS)

    model, info = load_checkpoint(out / "best.pt")
    assert info["arch"] == "drn_c_26" and len(info["classes"]) == 19 and info["width"] == 0.125
    ckpt = read_checkpoint(out / "best.pt")
    assert "training" not in ckpt and ckpt["metrics"]["miou"] == pytest.approx(best, abs=1e-5)


def test_amp_on_cpu_trains_in_bf16_and_keeps_fp32_weights(tmp_path, capsys):
    """--amp on on CPU: bf16 autocast (AMX / AVX512-BF16 cores run it several times faster), no
    loss scaling; the loss still falls and the checkpoint holds fp32 weights."""
    out = tmp_path / "amp"
    args = TINY + ["--synthetic-train", "16", "--synthetic-val", "2", "--epochs", "3", "--optimizer", "adam",
                   "--lr", "0.01", "--amp", "on", "--out", str(out)]
    assert train.main(args) == 0
    assert "with AMP (torch.bfloat16)" in capsys.readouterr().out
    rows = read_csv(out / "metrics.csv")
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    model, _ = load_checkpoint(out / "last.pt")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def state_equal(a, b):
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def test_killed_run_resumes_bit_for_bit(tmp_path):
    """One run goes straight through; another is SIGKILLed after its first epoch checkpoint,
    resumed, and must end with identical weights, optimiser state and losses."""
    common = TINY + ["--synthetic-train", "24", "--synthetic-val", "2", "--epochs", "4", "--eval-every", "2",
                     "--workers", "1", "--lr", "0.02", "--no-tensorboard"]
    # Every run is its own process, as a user's would be: in the pytest process, after the OpenVINO
    # tests, an in-process run with a DataLoader worker crashed with SIGSEGV inside the libraries.
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run(*extra):
        res = subprocess.run([sys.executable, "-m", "drn_perception.training.train", *common, *extra], env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]

    straight = tmp_path / "straight"
    run("--out", str(straight))

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "drn_perception.training.train", *common, "--out", str(killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (killed / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = read_checkpoint(killed / "last.pt")["training"]["epoch"]
    assert 1 <= done < 4, "the run should have been killed mid-way"

    run("--out", str(killed), "--resume")
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(killed / "last.pt")
    assert state_equal(a["state_dict"], b["state_dict"])
    sa, sb = a["training"]["optimizer"]["state"], b["training"]["optimizer"]["state"]
    assert all(torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"]) for k in sa)
    assert a["training"]["scheduler"]["last_epoch"] == b["training"]["scheduler"]["last_epoch"]
    rows_a, rows_b = read_csv(straight / "metrics.csv"), read_csv(killed / "metrics.csv")
    key = ["epoch", "iterations", "lr", "train_loss", "val_miou"]
    assert [[r[k] for k in key] for r in rows_a] == [[r[k] for k in key] for r in rows_b]


def test_torchrun_cpu_two_processes(tmp_path):
    """DistributedDataParallel over gloo through the standard launcher (CPU)."""
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "drn_perception.training.train", *TINY, "--synthetic-train", "16", "--synthetic-val", "3",
           "--epochs", "1", "--no-tensorboard", "--out", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 process(es)" in res.stdout
    rows = read_csv(out / "metrics.csv")
    assert len(rows) == 1 and int(rows[0]["iterations"]) == 2  # 16 images / (2 processes x 4)
    load_checkpoint(out / "last.pt")


def test_onnx_and_multiscale_evaluation(tmp_path):
    from drn_perception.deploy.export import export_onnx

    out = tmp_path / "run"
    assert train.main(TINY + ["--synthetic-train", "8", "--synthetic-val", "2", "--epochs", "1", "--optimizer", "adam",
                              "--lr", "0.01", "--no-tensorboard", "--out", str(out)]) == 0
    onnx_path = export_onnx(out / "best.pt", tmp_path / "model.onnx", check=False)
    data = ["--synthetic-num", "3", "--synthetic-size", "64x128", "--split", "test", "--no-progress"]
    results = {}
    ort = ["--backend", "onnxruntime"]  # the graph's fp32 labels (auto may pick OpenVINO at bf16)
    for name, model, scales in [("pt", out / "best.pt", ["1"]), ("onnx", onnx_path, ["1"]),
                                ("pt_ms", out / "best.pt", ["0.5", "1", "1.5"]),
                                ("onnx_ms", onnx_path, ["0.5", "1", "1.5"])]:
        path = tmp_path / f"{name}.json"
        extra = ort if name.startswith("onnx") else []
        assert evaluate.main([str(model), *data, "--scales", *scales, *extra, "--json", str(path)]) == 0
        results[name] = json.loads(path.read_text())
    assert results["onnx"]["backend"].startswith("onnxruntime")
    conf_pt, conf_onnx = np.array(results["pt"]["confusion"]), np.array(results["onnx"]["confusion"])
    assert np.abs(conf_pt - conf_onnx).sum() <= 0.002 * conf_pt.sum()  # same labels up to float ties
    assert results["pt_ms"]["scales"] == [0.5, 1.0, 1.5]
    assert np.array(results["onnx_ms"]["confusion"]).sum() == conf_pt.sum()


def test_user_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "lists"
    bad.mkdir()
    (bad / "info.json").write_text('{"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}')
    (bad / "train_images.txt").write_text("missing.png\n")
    assert train.main(["--data-dir", str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drn-train: error: ") and "missing.png" in err and err.count("\n") == 1
    assert train.main(TINY + ["--synthetic-train", "2", "--out", str(tmp_path / "o")]) == 2
    assert "fewer than one batch" in capsys.readouterr().err
    assert train.main(TINY + ["--out", str(tmp_path / "o2"), "--resume"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert evaluate.main([str(tmp_path / "nope.onnx")]) == 2
    assert capsys.readouterr().err.startswith("drn-eval: error: model file not found")


def test_init_starts_from_a_whole_segmentation_checkpoint(tmp_path, capsys):
    from drn_perception.model_info import cityscapes
    from drn_perception.models.checkpoints import save_checkpoint
    from drn_perception.models.segmentation import DRNSeg

    torch.manual_seed(123)
    start = DRNSeg("drn_c_26", 19, width=0.125)
    cs = cityscapes()
    info = {"arch": "drn_c_26", "width": 0.125, "classes": cs.classes, "palette": cs.palette}
    save_checkpoint(tmp_path / "start.pt", start, info)
    out = tmp_path / "ft"
    # lr 0: only BatchNorm running statistics may move, every weight must be the start's.
    assert train.main(TINY + ["--synthetic-train", "4", "--synthetic-val", "1", "--epochs", "1", "--lr", "0",
                              "--init", str(tmp_path / "start.pt"), "--no-tensorboard", "--out", str(out)]) == 0
    got = read_checkpoint(out / "last.pt")["state_dict"]
    for key, value in start.state_dict().items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(got[key], value), key
    capsys.readouterr()
    assert train.main(TINY + ["--width", "0.25", "--init", str(tmp_path / "start.pt"), "--synthetic-train", "4",
                              "--out", str(tmp_path / "bad")]) == 2
    assert "is drn_c_26 width 0.125 with 19 classes; this run is drn_c_26 width 0.25" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Cityscapes label files: raw labelIds given where trainIds are expected, and read natively

FOLDER_TRAIN = ["--crop-size", "32", "--width", "0.125", "--batch-size", "2", "--threads", "1", "--no-progress",
                "--no-tensorboard", "--epochs", "1", "--eval-every", "0", "--random-scale", "1",
                "--random-rotate", "0"]


def write_list_dataset(root: Path, labels: list, names: list | None = None) -> None:
    """The authors' list layout over generated 48x64 scenes, with the given label arrays."""
    import cv2

    from drn_perception.data.synthetic import generate_scene

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    names = names or [f"{i}.png" for i in range(len(labels))]
    for i, (label, name) in enumerate(zip(labels, names)):
        rgb, _ = generate_scene(i, 48, 64)
        assert cv2.imwrite(str(root / "images" / f"{i}.png"), rgb[..., ::-1])
        assert cv2.imwrite(str(root / "labels" / name), label)
    (root / "info.json").write_text('{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}')
    (root / "train_images.txt").write_text("".join(f"images/{i}.png\n" for i in range(len(labels))))
    (root / "train_labels.txt").write_text("".join(f"labels/{n}\n" for n in names))


def label_ids_of(train_ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds for a trainId map, by cityscapesScripts' own table (first label of each trainId)."""
    labels_mod = pytest.importorskip("cityscapesscripts.helpers.labels")
    out = np.zeros_like(train_ids)  # trainId 255 -> id 0 (unlabeled)
    for t in np.unique(train_ids):
        if t != 255:
            out[train_ids == t] = labels_mod.trainId2label[int(t)].id
    return out


def test_label_ids_given_to_drn_train_stop_it_in_one_line_before_the_first_step(tmp_path):
    """Raw labelIds in a list layout whose names do not say so (ids up to 33): drn-train, as a
    process, exits 2 with one line naming the file and the fix; nothing is trained or written."""
    from drn_perception.data.synthetic import generate_scene

    root = tmp_path / "lists"
    write_list_dataset(root, [label_ids_of(generate_scene(i, 48, 64)[1]) for i in range(4)])
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "drn_perception.training.train", "--data-dir", str(root),
                          *FOLDER_TRAIN, "--workers", "0", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drn-train: error: label "), res.stderr
    assert "labels/0.png" in lines[0] and "outside 0..18" in lines[0] and "createTrainIdLabelImgs" in lines[0]
    assert "--labels labelIds" in lines[0]
    assert "iterations/epoch" not in res.stdout and not out.exists()  # stopped before the run began
    # drn-eval refuses the same files with the same line.
    from drn_perception.default_model import default_model_path

    res = subprocess.run([sys.executable, "-m", "drn_perception.training.evaluate", str(default_model_path()),
                          "--data-dir", str(root), "--split", "train", "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [lines[0].replace("drn-train", "drn-eval")], \
        res.stderr[-3000:]


def test_a_bad_label_met_in_a_worker_mid_run_is_one_line_too(tmp_path):
    """Past the sample read at open, each label is checked when a batch reads it, also in a
    DataLoader worker process (torch re-raises its error with the worker's traceback). drn-train
    runs as its own process: DataLoader workers install torch's SIGCHLD handler in the process
    that starts them, which then stays for good (in this test process it broke a later test's
    signal return with SIGSEGV)."""
    from drn_perception.data.cityscapes import SAMPLE_FILES
    from drn_perception.data.synthetic import generate_scene

    n = 3 * SAMPLE_FILES
    labels = [generate_scene(i, 48, 64)[1] for i in range(n)]
    sampled = {int(i) for i in np.linspace(0, n - 1, SAMPLE_FILES).round()}
    victim = min(set(range(n)) - sampled)
    labels[victim] = label_ids_of(labels[victim])
    root = tmp_path / "lists"
    write_list_dataset(root, labels)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "drn_perception.training.train", "--data-dir", str(root),
                          *FOLDER_TRAIN, "--workers", "1", "--out", str(tmp_path / "run")],
                         env=env, capture_output=True, text=True, timeout=300)
    err = res.stderr
    assert res.returncode == 2 and err.count("\n") == 1, err[-3000:]
    assert err.startswith(f"drn-train: error: label {root / 'labels' / f'{victim}.png'} holds ids"), err
    assert "Traceback" not in err and "createTrainIdLabelImgs" in err


def test_drn_train_reads_native_label_ids(tmp_path, capsys):
    """Files named *_labelIds.png train through the official table (equal targets: test_datasets.py)."""
    from drn_perception.data.synthetic import generate_scene

    root = tmp_path / "lists"
    write_list_dataset(root, [label_ids_of(generate_scene(i, 48, 64)[1]) for i in range(4)],
                       names=[f"city_{i:06d}_000019_gtFine_labelIds.png" for i in range(4)])
    assert train.main(["--data-dir", str(root), *FOLDER_TRAIN, "--workers", "0", "--out", str(tmp_path / "run")]) == 0
    assert "4 train / 0 val images (Cityscapes labelIds -> trainIds)" in capsys.readouterr().out
    assert train.main(["--data-dir", str(root), *FOLDER_TRAIN, "--labels", "trainIds",
                       "--out", str(tmp_path / "run2")]) == 2
    assert "--labels labelIds" in capsys.readouterr().err
    assert train.main(["--dataset", "synthetic", "--labels", "labelIds", "--out", str(tmp_path / "run3")]) == 2
    assert "--labels labelIds applies to --data-dir datasets" in capsys.readouterr().err
