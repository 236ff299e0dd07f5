"""Reading and writing safetensors files: tpmlp's vector files and your outputs.

The format: an 8-byte little-endian header length N, N bytes of JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the raw little-endian data, offsets relative to its start. Names and shapes
of tpmlp's files: docs/vectors.md.

The header is always parsed and validated here first, so a damaged or hostile
file gives the same clear ValueError (naming the file and the tensor) whether or
not the `safetensors` package is installed; the data is then read with that
package when it is importable and can hold every dtype of the file (numpy has
no bfloat16), else with numpy here.
"""
import json
import math
import os
import struct

import numpy as np

try:  # optional: the reference implementation of the format
    import safetensors.numpy as _st_numpy
except Exception:  # pragma: no cover - depends on the environment
    _st_numpy = None

# dtype name -> (numpy dtype as stored, item size)
_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
# what the safetensors package's numpy loader cannot return
_NOT_FOR_PACKAGE = {"BF16"}

MAX_HEADER = 100 * 1000 * 1000  # the safetensors package's own limit

def _bad(path, what, name=None):
    where = f"{path}: tensor '{name}': " if name is not None else f"{path}: "
    return ValueError(where + what)


def _no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise KeyError(k)
        seen[k] = v
    return seen


def read_header(path):
    """Parses and validates the header of a safetensors file.

    Returns (entries, metadata, data_start): entries is a list of
    (name, dtype, shape tuple, begin, end) in file order, offsets relative to
    data_start. Raises ValueError naming the file (and the tensor) if the file
    is not well formed: truncated, a bad header, offsets out of range, tensors
    overlapping, a shape that does not match its bytes, holes in the data.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _bad(path, f"truncated: {size} bytes, fewer than the 8 of the header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise _bad(path, f"header length {n} is over the limit of {MAX_HEADER} bytes")
        if 8 + n > size:
            raise _bad(path, f"truncated: the header says it is {n} bytes, but the file has only "
                             f"{size - 8} after the length")
        raw = f.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad(path, f"the header is not UTF-8 ({e})") from None
    if not text.startswith("{"):
        raise _bad(path, "the header is not a JSON object (it must start with '{')")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except KeyError as e:
        raise _bad(path, f"the header names {e} twice") from None
    except ValueError as e:
        raise _bad(path, f"the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _bad(path, "the header is not a JSON object")

    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in meta.items()):
        raise _bad(path, "__metadata__ must be an object of strings")

    data_len = size - 8 - n
    entries = []
    for name, t in header.items():
        if not isinstance(t, dict):
            raise _bad(path, "its entry is not an object", name)
        dt = t.get("dtype")
        if dt not in _DTYPES:
            raise _bad(path, f"unknown dtype {dt!r} (known: {', '.join(_DTYPES)})", name)
        shape = t.get("shape")
        if not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise _bad(path, f"shape {shape!r} is not a list of non-negative integers", name)
        offs = t.get("data_offsets")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(
                isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise _bad(path, f"data_offsets {offs!r} is not a pair of integers", name)
        b, e = offs
        if b < 0 or e < b:
            raise _bad(path, f"data_offsets [{b}, {e}] are out of order", name)
        if e > data_len:
            raise _bad(path, f"data_offsets [{b}, {e}] run past the end of the data "
                             f"({data_len} bytes): the file is truncated or the offsets are out of range",
                       name)
        want = math.prod(shape) * _DTYPES[dt].itemsize
        if e - b != want:
            raise _bad(path, f"data_offsets [{b}, {e}] hold {e - b} bytes, but {dt} {shape} needs {want}",
                       name)
        entries.append((name, dt, tuple(shape), b, e))

    # no two tensors share bytes, and the data has no holes (the format's rules)
    end, prev = 0, None
    for name, _, _, b, e in sorted(entries, key=lambda x: (x[3], x[4])):
        if b < end:
            raise _bad(path, f"data_offsets [{b}, {e}] overlap those of '{prev}' (which end at {end})",
                       name)
        if b > end:
            raise _bad(path, f"data bytes [{end}, {b}) belong to no tensor (a hole before this one)",
                       name)
        end, prev = e, name
    if end != data_len:
        raise _bad(path, f"{data_len - end} bytes after the last tensor's data belong to no tensor")
    return entries, meta, 8 + n


def metadata(path):
    """The file's __metadata__ (a dict of strings), reading only its header."""
    return read_header(path)[1]


def load(path):
    """Reads a safetensors file: returns (dict name -> numpy array, metadata dict).

    F32, F64 and F16 come back as float32, float64, float16; BF16 as float32
    (numpy has no bfloat16; the conversion is exact); integer and bool types as
    themselves. The arrays are writable and in native byte order.
    """
    path = os.fspath(path)
    entries, meta, start = read_header(path)
    if _st_numpy is not None and not any(dt in _NOT_FOR_PACKAGE for _, dt, _, _, _ in entries):
        tensors = _st_numpy.load_file(path)
        out = {name: np.array(tensors[name]) for name, _, _, _, _ in entries}
        return out, dict(meta)
    out = {}
    with open(path, "rb") as f:
        for name, dt, shape, b, e in entries:
            f.seek(start + b)
            buf = f.read(e - b)
            if len(buf) != e - b:  # the file changed under us
                raise _bad(path, f"truncated while reading bytes [{b}, {e})", name)
            arr = np.frombuffer(buf, dtype=_DTYPES[dt]).reshape(shape)
            if dt == "BF16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            out[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)
    return out, dict(meta)


def _to_numpy(name, v):
    """A numpy array from a numpy array, a torch tensor (any device, bf16 too) or a list."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # torch.Tensor, without importing torch
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        v = v.numpy()
    arr = np.asarray(v)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"tensor '{name}': cannot save dtype {arr.dtype}")
    return arr


def save(path, tensors, metadata=None):
    """Writes a dict name -> array (numpy arrays, torch tensors) as safetensors.

    float64 arrays are kept as F64 and float16 as F16; everything else is
    written as float32 (F32). metadata is a dict whose keys and values are
    written as strings. The data of the wider dtypes comes first, so every
    tensor is aligned to its item size; the header is padded with spaces to
    a multiple of 8.
    """
    path = os.fspath(path)
    arrays = {}
    for name, v in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"{path}: bad tensor name {name!r}")
        arr = _to_numpy(name, v)
        dt = {"f8": "<f8", "f2": "<f2"}.get(f"{arr.dtype.kind}{arr.dtype.itemsize}", "<f4")
        arrays[name] = np.asarray(arr, dtype=dt, order="C")  # (ascontiguousarray makes 0-d 1-d)
    meta = None
    if metadata:
        meta = {str(k): str(v) for k, v in metadata.items()}

    if _st_numpy is not None:
        _st_numpy.save_file(arrays, path, metadata=meta)
        return

    order = sorted(arrays, key=lambda k: -arrays[k].dtype.itemsize)  # stable: keeps the given order
    names = {"<f8": "F64", "<f4": "F32", "<f2": "F16"}
    header, offset = {}, 0
    for name in order:
        arr = arrays[name]
        header[name] = {"dtype": names[arr.dtype.str], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    if meta:
        header = {"__metadata__": meta, **header}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name in order:
            f.write(arrays[name].tobytes())
