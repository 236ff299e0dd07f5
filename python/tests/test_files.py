"""tpmlp.load / tpmlp.save: round trips, the golden vectors, and files that must be refused."""
import json
import os
import struct

import numpy as np
import pytest

import tpmlp
import tpmlp.files as files
from conftest import GOLDEN, golden


@pytest.fixture(params=["package", "own"])
def impl(request, monkeypatch):
    """Runs a test with the safetensors package (where installed) and with our own reader/writer."""
    if request.param == "package":
        if files._st_numpy is None:
            pytest.skip("the safetensors package is not installed")
    else:
        monkeypatch.setattr(files, "_st_numpy", None)
    return request.param


def raw_file(path, header, data=b"", pad=True, length=None):
    """Writes a safetensors file by hand: header (a dict or bytes), then data."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h) if length is None else length) + h + data)
    return str(path)


def test_version():
    assert isinstance(tpmlp.__version__, str) and tpmlp.__version__.count(".") >= 1


def test_round_trip(tmp_path, impl):
    rng = np.random.default_rng(0)
    t = {
        "y": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "ref": rng.standard_normal((5,)),  # float64: stays F64
        "half": rng.standard_normal((3, 2)).astype(np.float16),
        "ints": np.arange(6).reshape(2, 3),  # written as F32
        "scalar": np.float32(1.5),
        "empty": np.zeros((0, 4), np.float32),
    }
    path = str(tmp_path / "rt.safetensors")
    tpmlp.save(path, t, {"B": 2, "note": "hi"})
    back, meta = tpmlp.load(path)
    assert meta == {"B": "2", "note": "hi"}
    assert set(back) == set(t)
    assert back["y"].dtype == np.float32 and np.array_equal(back["y"], t["y"])
    assert back["ref"].dtype == np.float64 and np.array_equal(back["ref"], t["ref"])
    assert back["half"].dtype == np.float16 and np.array_equal(back["half"], t["half"])
    assert back["ints"].dtype == np.float32 and np.array_equal(back["ints"], t["ints"])
    assert back["scalar"].shape == () and back["scalar"] == 1.5
    assert back["empty"].shape == (0, 4)
    back["y"][0, 0, 0] = 7  # writable
    # the format's layout: header padded to 8, every tensor aligned to its item size
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    for name, e in header.items():
        if name != "__metadata__":
            assert e["data_offsets"][0] % back[name].dtype.itemsize == 0


def test_golden_vector(tmp_path, impl):
    path = golden("gelu-2x3-d8-f20.safetensors")
    t, meta = tpmlp.load(path)
    assert meta["format"] == "tpmlp-mlp-vectors" and meta["activation"] == "gelu"
    B, T, D, F = (int(meta[k]) for k in "BTDF")
    assert (B, T, D, F) == (2, 3, 8, 20)
    shapes = {"x": (B, T, D), "linear_fc1.weight": (F, D), "linear_fc1.bias": (F,),
              "linear_fc2.weight": (D, F), "linear_fc2.bias": (D,), "dy": (B, T, D),
              "h": (B, T, F), "a": (B, T, F), "y": (B, T, D), "dx": (B, T, D),
              "linear_fc1.weight.grad": (F, D), "linear_fc1.bias.grad": (F,),
              "linear_fc2.weight.grad": (D, F), "linear_fc2.bias.grad": (D,)}
    assert {k: v.shape for k, v in t.items()} == shapes
    inputs = ("x", "linear_fc1.weight", "linear_fc1.bias", "linear_fc2.weight", "linear_fc2.bias", "dy")
    for k, v in t.items():  # the inputs as float32, the references as float64
        assert v.dtype == (np.float32 if k in inputs else np.float64), k
    # the references are what they say: h = x W1^T + b1, y = a W2^T + b2 (float64 sums)
    x, w1, b1 = (t[k].astype(np.float64) for k in ("x", "linear_fc1.weight", "linear_fc1.bias"))
    np.testing.assert_allclose(t["h"], x @ w1.T + b1, rtol=0, atol=1e-12)
    w2, b2 = t["linear_fc2.weight"].astype(np.float64), t["linear_fc2.bias"].astype(np.float64)
    np.testing.assert_allclose(t["y"], t["a"] @ w2.T + b2, rtol=0, atol=1e-12)
    # and back through save: the same arrays, F64 kept
    out = str(tmp_path / "copy.safetensors")
    tpmlp.save(out, t, meta)
    t2, meta2 = tpmlp.load(out)
    assert meta2 == meta
    for k in t:
        assert t2[k].dtype == t[k].dtype and np.array_equal(t2[k], t[k]), k
    assert tpmlp.metadata(path) == meta


@pytest.mark.parametrize("name", sorted(os.listdir(GOLDEN)) if os.path.isdir(GOLDEN) else [])
def test_every_golden_loads(name):
    t, meta = tpmlp.load(golden(name))
    # 14 tensors; a step without biases (metadata bias = 0) has no b1, b2 nor their gradients: 10
    assert len(t) == (10 if meta.get("bias") == "0" else 14) and meta["format"] == "tpmlp-mlp-vectors"
    assert ("linear_fc1.bias" in t) == ("linear_fc2.bias.grad" in t) == (meta.get("bias") != "0")


def test_bf16_read(tmp_path, impl):
    vals = np.array([1.0, -2.5, 0.15625, 2.0 ** 100], dtype=np.float32)
    bits = (vals.view(np.uint32) >> 16).astype("<u2")  # these values are exact in bf16
    path = raw_file(tmp_path / "bf.safetensors",
                    {"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bits.tobytes())
    t, _ = tpmlp.load(path)
    assert t["a"].dtype == np.float32
    assert np.array_equal(t["a"].ravel(), vals)


def test_save_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3).requires_grad_()
    d = torch.ones(2, dtype=torch.float64)
    b = torch.tensor([1.5, -2.0], dtype=torch.bfloat16)
    path = str(tmp_path / "t.safetensors")
    tpmlp.save(path, {"x": x * 2, "d": d, "b": b})
    t, _ = tpmlp.load(path)
    assert t["x"].dtype == np.float32 and np.array_equal(t["x"], np.arange(6).reshape(2, 3) * 2)
    assert t["d"].dtype == np.float64
    assert t["b"].dtype == np.float32 and list(t["b"]) == [1.5, -2.0]


F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

HOSTILE = {
    # id: (header or raw bytes, data, kwargs for raw_file, words the message must hold)
    "empty-file": (None, None, None, ["truncated"]),
    "short-length": (b"", b"", {"length": 1 << 20, "pad": False}, ["truncated"]),
    "huge-length": (b"{}", b"", {"length": 1 << 62, "pad": False}, ["over the limit"]),
    "not-json": (b"{not json", b"", {}, ["not valid JSON"]),
    "not-object": (b"[1, 2]", b"", {}, ["not a JSON object"]),
    "not-utf8": (b"{\"\xff\": 1}", b"", {}, ["UTF-8"]),
    "past-end": ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, {},
                 ["'w'", "past the end"]),
    "out-of-order": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, {},
                     ["'w'", "out of order"]),
    "negative": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, b"\0" * 8, {},
                 ["'w'", "out of order"]),
    "overlap": ({"a": F32_2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                b"\0" * 12, {}, ["'b'", "overlap", "'a'"]),
    "same-bytes": ({"a": F32_2, "b": F32_2}, b"\0" * 8, {}, ["overlap"]),
    "size-mismatch": ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, {},
                      ["'w'", "needs 12"]),
    "bad-dtype": ({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16, {},
                  ["'w'", "unknown dtype"]),
    "bad-shape": ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, {},
                  ["'w'", "shape"]),
    "bad-offsets": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": "0-8"}}, b"\0" * 8, {},
                    ["'w'", "data_offsets"]),
    "hole": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16, {},
             ["'w'", "no tensor"]),
    "trailing-bytes": ({"w": F32_2}, b"\0" * 12, {}, ["after the last tensor"]),
    "duplicate": (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
                  b'"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8, {},
                  ["'w' twice"]),
    "metadata-not-strings": ({"__metadata__": {"B": 2}, "w": F32_2}, b"\0" * 8, {}, ["__metadata__"]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_header(tmp_path, impl, case):
    header, data, kw, words = HOSTILE[case]
    path = str(tmp_path / f"{case}.safetensors")
    if header is None:
        open(path, "wb").close()
    else:
        raw_file(path, header, data, **kw)
    with pytest.raises(ValueError) as e:
        tpmlp.load(path)
    msg = str(e.value)
    assert path in msg
    for w in words:
        assert w in msg, (w, msg)


def test_truncated_golden(tmp_path, impl):
    raw = open(golden("gelu-2x3-d8-f20.safetensors"), "rb").read()
    path = str(tmp_path / "cut.safetensors")
    with open(path, "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(ValueError, match=r"cut\.safetensors: tensor '.*': .*past the end"):
        tpmlp.load(path)
    with open(path, "wb") as f:
        f.write(raw[:200])  # inside the header
    with pytest.raises(ValueError, match="truncated"):
        tpmlp.load(path)
