"""drn-bench and drn-quantize: the command writes a well-formed table, the numbers in it are
computed right, and the int8 graph is a working model. No timing assertions."""
import json
import re

import numpy as np
import pytest

from drn_perception.bench import bench
from drn_perception.bench.bench import EVAL_SEED0, label_agreement, paired_speedup, summarise

SIZE = "32x64"


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """Cells of the markdown table whose header row begins with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_label_agreement_counts_equal_pixels():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 19, size=(2, 30, 40), dtype=np.int32)
    b = a.copy()
    flat = b.reshape(-1)
    changed = rng.choice(flat.size, size=123, replace=False)
    flat[changed] = (flat[changed] + 1 + rng.integers(0, 18, size=123)) % 19  # always a different label
    assert label_agreement(a, b) == pytest.approx(1 - 123 / a.size)
    assert label_agreement(a, a) == 1.0
    assert label_agreement(a, (a + 1) % 19) == 0.0
    with pytest.raises(ValueError, match="shape"):
        label_agreement(a, a[:, :-1])


def test_summary_statistics():
    s = summarise([float(v) for v in range(1, 12)])  # 1..11
    assert (s["median"], s["min"], s["max"], s["n"]) == (6.0, 1.0, 11.0, 11)
    assert s["p10"] == pytest.approx(2.0) and s["p90"] == pytest.approx(10.0)
    # each round's ratio, then the median: 2, 4, 1 -> 2
    assert paired_speedup([2.0, 4.0, 1.0], [1.0, 1.0, 1.0]) == 2.0


def test_eval_scenes_come_from_the_test_split():
    from drn_perception.data.synthetic_dataset import split_seed

    assert EVAL_SEED0 == split_seed("test", 0)


def test_bench_writes_a_table(tiny_checkpoint, tmp_path, capsys):
    out, js = tmp_path / "res.md", tmp_path / "res.json"
    rc = bench.main(["--model", str(tiny_checkpoint), "--size", SIZE, "--paths", "torch,onnxruntime,onnxruntime-int8",
                     "--repeats", "2", "--scenes", "2", "--cameras", "2", "--calibration-frames", "2",
                     "--calibration-size", SIZE, "--out", str(out), "--json", str(js), "--quiet"])
    assert rc == 0
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out  # the table is printed and written
    for key in ("- machine:", "- versions:", "numpy", "onnxruntime", "torch", "- load average", "cores"):
        assert key in text
    rows = {r[0]: r for r in table_rows(text, "| path | precision |")}
    assert {"torch", "onnxruntime", "onnxruntime-int8"} <= rows.keys()
    header = table_rows(text, "| path | precision |")
    assert all(len(r) == 10 for r in header)
    assert rows["torch"][7] == "100.00%" and rows["torch"][6] == "1.00x"
    for name in ("onnxruntime", "onnxruntime-int8"):
        median, spread = float(rows[name][2]), rows[name][3]
        lo, hi = (float(v) for v in spread.split("–"))
        assert 0 < lo <= median <= hi
        assert 0.0 <= float(rows[name][7].rstrip("%")) <= 100.0
        assert re.fullmatch(r"[\d.]+x", rows[name][6])
    assert rows["onnxruntime"][1] == "fp32" and rows["onnxruntime-int8"][1] == "int8"
    # the exported graph gives the checkpoint's labels (export parity)
    assert float(rows["onnxruntime"][7].rstrip("%")) >= 99.9
    cams = {r[0]: r for r in table_rows(text, "| path | sequential ms |")}
    assert cams.keys() == rows.keys() - {"(torch, input ±1 grey level)"}
    data = json.loads(js.read_text())
    section = data["sections"][0]
    assert section["size"] == [32, 64] and section["reference"] == "torch"
    for name, r in section["results"].items():
        assert len(r["times_s"]) == 2 and len(r["cameras_sequential_s"]) == 2
        assert r["summary"]["median"] == pytest.approx(np.median(r["times_s"]))


def test_node_path_runs_frames_through_the_node(tiny_onnx_model, tmp_path):
    """--replay: a real seg_node process over DDS; every frame answered, the node's own timings reported."""
    out = tmp_path / "res.md"
    js = tmp_path / "res.json"
    rc = bench.main(["--model", str(tiny_onnx_model), "--size", SIZE, "--paths", "onnxruntime", "--repeats", "1",
                     "--scenes", "0", "--replay", "--replay-frames", "3", "--replay-rounds", "2", "--out", str(out),
                     "--json", str(js), "--quiet"])
    assert rc == 0
    rows = {r[0]: r for r in table_rows(out.read_text(), "| path | node masks/s |")}
    row = rows["onnxruntime"]
    assert len(row) == 9 and row[-1] == "0", row  # nothing dropped
    assert float(row[6]) > 0, row  # the node's own inference p50, from its /diagnostics
    report = json.loads(js.read_text())["sections"][0]["replay"]["onnxruntime"]
    assert report["labels_topic"] is None and report["metrics"] is None  # recorded, not scored
    # one running node served the warm-up pass and both rounds
    assert report["node"]["started"] is False
    assert int(report["node"]["diagnostics"]["masks_out"]) >= 3 * 3
    rounds = report["rounds"]
    assert len(rounds["node_fps"]) == 2 and len(rounds["direct_fps"]) == 3  # direct, node, direct, node, direct
    assert rounds["ratios"] == pytest.approx([n / ((a + b) / 2) for n, a, b in
                                              zip(rounds["node_fps"], rounds["direct_fps"], rounds["direct_fps"][1:])])
    assert float(row[1]) == pytest.approx(np.median(rounds["node_fps"]), abs=0.006)
    assert row[3].startswith(f"{np.median(rounds['ratios']):.2f} (") and row[4] == "2"
    p50, p95 = (float(v) for v in row[7].split("/"))
    assert 0 < p50 <= p95


def test_compare_agreement_matches_a_direct_count(tiny_onnx_model, tmp_path):
    from drn_perception.data.synthetic import generate_scene
    from drn_perception.deploy.quantize import quantize_int8
    from drn_perception.inference import create_segmenter

    int8 = quantize_int8(tiny_onnx_model, tmp_path / "tiny.int8.onnx", calibration_count=2, calibration_size=(32, 64))
    js = tmp_path / "cmp.json"
    rc = bench.main(["--model", str(tiny_onnx_model), "--int8-model", str(int8), "--compare",
                     "onnxruntime,onnxruntime-int8", "--size", SIZE, "--scenes", "3", "--no-write",
                     "--json", str(js), "--quiet"])
    assert rc == 0
    section = json.loads(js.read_text())["sections"][0]
    assert all(r["times_s"] == [] for r in section["results"].values())
    images = np.stack([generate_scene(EVAL_SEED0 + i, 32, 64)[0] for i in range(3)])
    fp32 = create_segmenter(tiny_onnx_model, "onnxruntime").infer(images).labels
    q = create_segmenter(int8, "onnxruntime").infer(images).labels
    expected = np.count_nonzero(fp32 == q) / fp32.size
    assert section["results"]["onnxruntime-int8"]["agreement"] == pytest.approx(expected)
    # mIoU against the scenes' exact labels is reported for a given (non-random) model
    assert 0.0 <= section["results"]["onnxruntime"]["miou"] <= 1.0


def test_quantised_graph_is_an_integer_model(tiny_onnx_model, tmp_path):
    import onnx

    from drn_perception.deploy.quantize import quantize_int8
    from drn_perception.inference import create_segmenter
    from drn_perception.model_info import sidecar_path

    out = quantize_int8(tiny_onnx_model, tmp_path / "q.onnx", calibration_count=2, calibration_size=(32, 64))
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["quantization"]["weights"].startswith("int8")
    assert meta["classes"] == json.loads(sidecar_path(tiny_onnx_model).read_text())["classes"]
    seg = create_segmenter(out)
    res = seg.infer(np.zeros((2, 40, 56, 3), np.uint8), want_confidence=True)
    assert res.labels.shape == (2, 40, 56) and res.labels.dtype == np.int32
    assert 0 <= res.labels.min() and res.labels.max() < len(meta["classes"])
    assert res.confidence.shape == (2, 40, 56) and np.all((res.confidence > 0) & (res.confidence <= 1))


def test_bad_input_gives_one_line(tmp_path, capsys):
    assert bench.main(["--paths", "torch,warp-drive", "--no-write"]) == 2
    err = capsys.readouterr().err
    assert "unknown path warp-drive" in err and "Traceback" not in err
    assert bench.main(["--model", str(tmp_path / "missing.onnx"), "--no-write"]) == 2
    assert "model file not found" in capsys.readouterr().err
    from drn_perception.deploy.quantize import main as quantize_main

    assert quantize_main([str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "q.onnx")]) == 2
    assert "not found" in capsys.readouterr().err


def test_labels_only_graph_keeps_the_labels(tiny_onnx_model, tmp_path):
    import onnx

    from drn_perception.data.synthetic import generate_scene
    from drn_perception.deploy.quantize import labels_only
    from drn_perception.inference import create_segmenter
    from drn_perception.model_info import sidecar_path

    out = labels_only(tiny_onnx_model, tmp_path / "lo.onnx")
    graph = onnx.load(str(out))
    assert [o.name for o in graph.graph.output] == ["labels"]
    assert not {"Softmax", "ReduceMax"} & {n.op_type for n in graph.graph.node}
    assert json.loads(sidecar_path(out).read_text())["outputs"] == ["labels"]
    images = np.stack([generate_scene(EVAL_SEED0 + i, 48, 64)[0] for i in range(2)])
    full, lo = create_segmenter(tiny_onnx_model), create_segmenter(out)
    np.testing.assert_array_equal(lo.infer(images).labels, full.infer(images).labels)
    assert lo.infer(images, want_confidence=True).confidence is None  # asked for, but the graph has none


def test_classifier_stays_float_unless_asked(tiny_onnx_model, tmp_path):
    """The last Conv (its outputs are the logits argmax reads) keeps float inputs by default."""
    import onnx

    from drn_perception.deploy.quantize import classifier_layers, quantize_int8

    (head,) = classifier_layers(tiny_onnx_model)
    source = onnx.load(str(tiny_onnx_model)).graph
    weights = {t.name: list(t.dims) for t in source.initializer}
    head_weight = weights[next(n for n in source.node if n.name == head).input[1]]
    assert head_weight[0] == 19 and head_weight[2:] == [1, 1]  # the 1x1 classifier: 19 logits

    def head_weight_quantised(path) -> bool:  # QDQ: an int8 weight reaches the Conv through DequantizeLinear
        graph = onnx.load(str(path)).graph
        producer = {o: n.op_type for n in graph.node for o in n.output}
        node = next(n for n in graph.node if n.name == head)
        return producer.get(node.input[1]) == "DequantizeLinear"

    default = quantize_int8(tiny_onnx_model, tmp_path / "q.onnx", calibration_count=2, calibration_size=(32, 64))
    assert not head_weight_quantised(default)
    everything = quantize_int8(tiny_onnx_model, tmp_path / "q_all.onnx", calibration_count=2,
                               calibration_size=(32, 64), quantize_classifier=True)
    assert head_weight_quantised(everything)


def test_mean_minmax_ranges_are_within_the_extremes(tiny_onnx_model, tmp_path):
    """Default calibration averages each frame's range: every activation's 8-bit step is at most
    the one the extremes over all frames give, and smaller where the frames differ."""
    import onnx
    from onnx import numpy_helper

    from drn_perception.deploy.quantize import quantize_int8

    def activation_scales(path) -> dict:
        graph = onnx.load(str(path)).graph
        inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        return {n.input[0]: float(inits[n.input[1]]) for n in graph.node  # weights are stored quantised
                if n.op_type == "QuantizeLinear" and n.input[0] not in inits}

    kw = dict(calibration_count=4, calibration_size=(32, 64))
    mean = activation_scales(quantize_int8(tiny_onnx_model, tmp_path / "mean.onnx", **kw))
    extremes = activation_scales(quantize_int8(tiny_onnx_model, tmp_path / "ext.onnx", method="minmax", **kw))
    assert mean.keys() == extremes.keys() and len(mean) > 10
    assert all(mean[t] <= extremes[t] * (1 + 1e-6) for t in mean)
    assert sum(mean[t] < extremes[t] * 0.99 for t in mean) > len(mean) // 2


def test_openvino_paths_report_their_precision_and_agreement(tiny_onnx_model, tmp_path):
    """openvino-f32 gives ONNX Runtime's labels; each OpenVINO row names the precision the
    backend settled on (auto -> bf16 or f32 by the cores), not the path's "auto"."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from drn_perception.inference.openvino_backend import OpenVinoSegmenter

    out, js = tmp_path / "ov.md", tmp_path / "ov.json"
    rc = bench.main(["--model", str(tiny_onnx_model), "--size", SIZE, "--paths",
                     "onnxruntime,openvino-f32,openvino,openvino-int8", "--repeats", "1", "--scenes", "2",
                     "--calibration-frames", "2", "--calibration-size", SIZE, "--out", str(out), "--json", str(js),
                     "--quiet"])
    assert rc == 0
    rows = {r[0]: r for r in table_rows(out.read_text(), "| path | precision |")}
    auto = OpenVinoSegmenter(tiny_onnx_model, device="cpu").precision
    assert (rows["openvino-f32"][1], rows["openvino"][1], rows["openvino-int8"][1]) == ("f32", auto, f"int8+{auto}")
    assert rows["openvino-f32"][7] == "100.00%"
    results = json.loads(js.read_text())["sections"][0]["results"]
    assert results["openvino-int8"]["describe"].startswith(f"openvino:CPU int8+{auto} ")
    assert "OpenVINO int8 IR quantised here with NNCF" in out.read_text()
