"""Plain data across the grader's trust boundary: a small binary format that decodes only to data.

The student's process (the sandbox) and the grader's trusted test process exchange values in this format
only. The decoder builds nothing but None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
frozenset, torch tensors and numpy arrays (numeric and bool dtypes) and numpy scalars, from bytes that it checks
as it reads (sizes, nesting depth, item count, dtypes from a fixed list): an object of the student's cannot
cross, whatever its type claims, so a patched ``__eq__`` or a tensor subclass stays on the student's side.

The decoder is written for bytes made by a hostile process: every failure (malformed bytes, an exception of
numpy or torch, running out of memory or stack) comes out as WireError, the only error it raises; what it
builds is bounded (MAX_ITEMS values in all, a memory cost of at most MAX_COST_FACTOR times the message's size
plus COST_ALLOWANCE, MAX_DEPTH levels); it checks a deadline as it goes; and dict keys and set elements may only be None, bool, str
or ints below 2**61 - 1 in size, whose hashes cannot be made to collide (str hashes are salted per process; such
ints hash to themselves), so no set or dict can be built in quadratic time.

This module needs only the standard library; numpy and torch are imported when a value needs them. The
sandbox loads a copy of this file by path (it cannot import coursekit).

Frames on a pipe: ``b"CKW1"`` + the payload's length (8 bytes, little-endian) + the payload.
"""
from __future__ import annotations

import math
import os
import select
import struct
import sys
import time

__all__ = ["NotData", "WireError", "WireTimeout", "encode", "decode", "write_frame", "read_frame",
           "DEFAULT_LIMIT", "describe_type"]

MAGIC = b"CKW1"
HEADER = struct.Struct("<4sQ")
DEFAULT_LIMIT = 64 * 1024 * 1024   # bytes of one message
MAX_DEPTH = 64
MAX_ITEMS = 1_000_000
MAX_COST_FACTOR = 8                # bytes of objects built per byte of message, at most (plus COST_ALLOWANCE)
COST_ALLOWANCE = 128 * 1024 * 1024
ITEM_COST = 64                     # bytes counted per value built
_HASH_MODULUS = (1 << 61) - 1      # sys.hash_info.modulus on 64-bit CPython: smaller ints hash to themselves
MAX_INT_DIGITS = 4300
MAX_NDIM = 32
MAX_DIM = 1 << 40             # elements along one dimension (an empty tensor could claim any)
TORCH_DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128",
                "int8", "int16", "int32", "int64", "uint8", "bool")
_NUMPY_KINDS = "biufc"


class NotData(TypeError):
    """A value (or a part of it) that is not plain data: a function, module, class or other object."""


class WireError(ValueError):
    """Bytes that are not a well-formed message (truncated, oversized, unknown tag or dtype)."""


class WireTimeout(TimeoutError):
    """The other side did not send (or read) a whole message in time."""


def describe_type(value) -> str:
    t = type(value)
    mod = getattr(t, "__module__", "") or ""
    name = getattr(t, "__qualname__", getattr(t, "__name__", "object"))
    return name if mod in ("builtins", "") else f"{mod}.{name}"


def _check_key(k, what: str, error) -> None:
    """Dict keys and set elements: None, bool, str, or an int of size below 2**61 - 1 (hashes that cannot collide)."""
    if k is None or k is True or k is False or type(k) is str:
        return
    if type(k) is int and -_HASH_MODULUS < k < _HASH_MODULUS:
        return
    if isinstance(k, int) and not isinstance(k, bool):
        raise error(f"{what} that is an int of size 2**61 or more")
    raise error(f"{what} of type {describe_type(k)} (only str, bool, None and ints below 2**61 may be keys or set elements)")


# ------------------------------------------------------------------------------------------------ encoding
def encode(value, limit: int = DEFAULT_LIMIT) -> bytes:
    """`value` as bytes; NotData if it holds anything but plain data, WireError if larger than `limit`."""
    out = bytearray()
    _Encoder(out, limit).put(value, 0)
    return bytes(out)


class _Encoder:
    def __init__(self, out: bytearray, limit: int):
        self.out, self.limit, self.items = out, limit, 0

    def _room(self, n: int):
        if len(self.out) + n > self.limit:
            raise WireError(f"more than {self.limit // (1024 * 1024)} MB of data")

    def _u32(self, n: int):
        self.out += struct.pack("<I", n)

    def _str(self, s: str):
        b = s.encode("utf-8", "surrogatepass")
        self._room(5 + len(b))
        self._u32(len(b))
        self.out += b

    def put(self, v, depth: int):
        if depth > MAX_DEPTH:
            raise NotData(f"nested more than {MAX_DEPTH} levels deep")
        self.items += 1
        if self.items > MAX_ITEMS:
            raise WireError(f"more than {MAX_ITEMS} items")
        out = self.out
        self._room(16)
        if v is None:
            out += b"N"
            return
        if v is True or v is False:
            out += b"T" if v else b"F"
            return
        np = sys.modules.get("numpy")
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(v, torch.Tensor):
            self._tensor(v, torch)
            return
        if np is not None and isinstance(v, np.ndarray):
            self._array(v, np)
            return
        if np is not None and isinstance(v, np.generic):
            self._npscalar(v, np)
            return
        if isinstance(v, bool):  # a bool subclass: impossible in CPython, kept for clarity
            out += b"T" if bool.__bool__(v) else b"F"
            return
        if isinstance(v, int):
            s = int.__repr__(int(v))
            if len(s) > MAX_INT_DIGITS:
                raise NotData(f"an int of more than {MAX_INT_DIGITS} digits")
            out += b"i"
            self._str(s)
            return
        if isinstance(v, float):
            out += b"f" + struct.pack("<d", float.__float__(v))
            return
        if isinstance(v, complex):
            c = complex.__complex__(v)
            out += b"c" + struct.pack("<dd", c.real, c.imag)
            return
        if isinstance(v, str):
            out += b"s"
            self._str(str.__str__(v))
            return
        if isinstance(v, (bytes, bytearray)):
            b = bytes(v)
            self._room(5 + len(b))
            out += b"y"
            self._u32(len(b))
            out += b
            return
        for typ, tag in ((list, b"l"), (tuple, b"t"), (set, b"S"), (frozenset, b"Z")):
            if isinstance(v, typ):
                items = list(typ.__iter__(v))
                out += tag
                self._u32(len(items))
                for x in items:
                    if tag in (b"S", b"Z"):
                        _check_key(x, "a set element", NotData)
                    self.put(x, depth + 1)
                return
        if isinstance(v, dict):
            items = list(dict.items(v))
            out += b"d"
            self._u32(len(items))
            for k, x in items:
                _check_key(k, "a dict key", NotData)
                self.put(k, depth + 1)
                self.put(x, depth + 1)
            return
        raise NotData(f"a {describe_type(v)}")

    def _shape(self, shape):
        if len(shape) > MAX_NDIM:
            raise NotData(f"an array of more than {MAX_NDIM} dimensions")
        self.out += struct.pack("<B", len(shape))
        for n in shape:
            self.out += struct.pack("<Q", int(n))

    def _raw(self, raw: bytes):
        self._room(9 + len(raw))
        self.out += struct.pack("<Q", len(raw))
        self.out += raw

    def _tensor(self, v, torch):
        t = v.detach()
        if t.layout != torch.strided or t.is_quantized or t.device.type == "meta" or getattr(t, "is_nested", False):
            raise NotData(f"a {t.layout} tensor on {t.device}")
        name = str(t.dtype).replace("torch.", "")
        if name not in TORCH_DTYPES:
            raise NotData(f"a tensor of dtype {t.dtype}")
        requires_grad = bool(v.requires_grad) if v.is_leaf else False
        t = t.to("cpu").resolve_conj().resolve_neg().contiguous()
        if type(t) is not torch.Tensor:
            t = t.as_subclass(torch.Tensor)  # a plain tensor, not a subclass
        self._room(t.numel() * t.element_size() + 64 + 8 * t.dim())
        flat = t.reshape(-1)
        if name == "bool":
            raw = flat.view(torch.uint8).numpy().tobytes()
        elif name == "bfloat16":
            raw = flat.view(torch.int16).numpy().tobytes()
        else:
            raw = flat.numpy().tobytes()
        self.out += b"X"
        self._str(name)
        self._shape(tuple(t.shape))
        self.out += b"\x01" if requires_grad else b"\x00"
        self._raw(raw)

    def _array(self, v, np):
        a = np.ascontiguousarray(np.ndarray.view(v, np.ndarray))
        if a.dtype.kind not in _NUMPY_KINDS or a.dtype.hasobject or a.dtype.fields is not None:
            raise NotData(f"a numpy array of dtype {a.dtype}")
        self._room(a.nbytes + 64 + 8 * a.ndim)
        self.out += b"A"
        self._str(a.dtype.str)
        self._shape(a.shape)
        self._raw(a.tobytes())

    def _npscalar(self, v, np):
        dt = np.dtype(type(v))
        if dt.kind not in _NUMPY_KINDS or dt.hasobject:
            raise NotData(f"a numpy scalar of dtype {dt}")
        self.out += b"a"
        self._str(dt.str)
        raw = np.asarray(v, dtype=dt).tobytes()
        self._raw(raw)


# ------------------------------------------------------------------------------------------------ decoding
def decode(data: bytes, limit: int = DEFAULT_LIMIT, deadline: float | None = None):
    """The data that `data` encodes; WireError for anything malformed, too costly or too slow to decode (past
    `deadline`, a time.monotonic() value), and for any other failure while decoding. Builds only plain data."""
    if len(data) > limit:
        raise WireError(f"message of {len(data)} bytes, over the limit of {limit}")
    try:
        d = _Decoder(memoryview(data), deadline, MAX_COST_FACTOR * len(data) + COST_ALLOWANCE)
        value = d.get(0)
        if d.pos != len(data):
            raise WireError("trailing bytes after the value")
        return value
    except WireError:
        raise
    except RecursionError:
        raise WireError("nested too deep") from None
    except MemoryError:
        raise WireError("out of memory while decoding") from None
    except Exception as exc:  # numpy's, torch's or struct's errors on bytes made to break them
        raise WireError(f"malformed data ({type(exc).__name__})") from None


_DTYPE_RE_CHARS = set("<>|=")


class _Decoder:
    def __init__(self, buf: memoryview, deadline: float | None = None, budget: int = 1 << 62):
        self.buf, self.pos, self.items = buf, 0, 0
        self.deadline, self.cost, self.budget = deadline, 0, budget

    def spend(self, nbytes: int) -> None:
        self.cost += nbytes
        if self.cost > self.budget:
            raise WireError("the message would build too many objects")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise WireError("truncated message")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def text(self, max_len: int | None = None) -> str:
        n = self.u32()
        if max_len is not None and n > max_len:
            raise WireError("string too long here")
        try:
            return bytes(self.take(n)).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise WireError("invalid UTF-8") from None

    def count(self) -> int:
        n = self.u32()
        if n > len(self.buf) - self.pos:  # every item takes at least one byte
            raise WireError("item count larger than the message")
        return n

    def shape(self) -> tuple:
        ndim = self.u8()
        if ndim > MAX_NDIM:
            raise WireError("too many dimensions")
        shape = tuple(self.u64() for _ in range(ndim))
        if any(n > MAX_DIM for n in shape):
            raise WireError("a dimension too large")
        return shape

    def get(self, depth: int):
        if depth > MAX_DEPTH:
            raise WireError("nested too deep")
        self.items += 1
        if self.items > MAX_ITEMS:
            raise WireError("too many items")
        if self.deadline is not None and not self.items & 1023 and time.monotonic() > self.deadline:
            raise WireError("decoding took too long")
        self.spend(ITEM_COST)
        tag = bytes(self.take(1))
        if tag == b"N":
            return None
        if tag == b"T":
            return True
        if tag == b"F":
            return False
        if tag == b"i":
            s = self.text(MAX_INT_DIGITS + 1)
            if not s or not all(c in "-0123456789" for c in s) or "-" in s[1:]:
                raise WireError("malformed int")
            try:
                return int(s)
            except ValueError:
                raise WireError("malformed int") from None
        if tag == b"f":
            return struct.unpack("<d", self.take(8))[0]
        if tag == b"c":
            re, im = struct.unpack("<dd", self.take(16))
            return complex(re, im)
        if tag == b"s":
            s = self.text()
            self.spend(4 * len(s))
            return s
        if tag == b"y":
            b = bytes(self.take(self.u32()))
            self.spend(len(b))
            return b
        if tag in (b"l", b"t", b"S", b"Z"):
            n = self.count()
            self.spend(8 * n)
            items = [self.get(depth + 1) for _ in range(n)]
            if tag == b"l":
                return items
            if tag == b"t":
                return tuple(items)
            for x in items:
                _check_key(x, "a set element", WireError)
            return set(items) if tag == b"S" else frozenset(items)
        if tag == b"d":
            n = self.count()
            self.spend(16 * n)
            out = {}
            for _ in range(n):
                k = self.get(depth + 1)
                _check_key(k, "a dict key", WireError)
                out[k] = self.get(depth + 1)
            return out
        if tag == b"X":
            return self._tensor()
        if tag == b"A":
            return self._array()
        if tag == b"a":
            return self._npscalar()
        raise WireError(f"unknown tag {tag!r}")

    def _tensor(self):
        import torch

        name = self.text(16)
        if name not in TORCH_DTYPES:
            raise WireError(f"tensor dtype {name!r} is not allowed")
        dtype = getattr(torch, name)
        shape = self.shape()
        requires_grad = self.u8() == 1
        nbytes = self.u64()
        n = math.prod(shape)
        size = torch.empty((), dtype=dtype).element_size()
        if n * size != nbytes:
            raise WireError("tensor size does not match its shape")
        raw = self.take(nbytes)
        self.spend(nbytes)
        if n == 0:
            t = torch.empty(shape, dtype=dtype)
        elif name == "bool":
            t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(shape) != 0
        else:
            t = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
        if requires_grad and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
        return t

    def _dtype(self):
        import numpy as np

        s = self.text(8)
        if len(s) < 3 or s[0] not in _DTYPE_RE_CHARS or s[1] not in _NUMPY_KINDS or not s[2:].isdigit():
            raise WireError(f"numpy dtype {s!r} is not allowed")
        try:
            dt = np.dtype(s)
        except TypeError:
            raise WireError(f"numpy dtype {s!r} is not allowed") from None
        if dt.kind not in _NUMPY_KINDS or dt.hasobject or dt.fields is not None:
            raise WireError(f"numpy dtype {s!r} is not allowed")
        return np, dt

    def _array(self):
        np, dt = self._dtype()
        shape = self.shape()
        nbytes = self.u64()
        if math.prod(shape) * dt.itemsize != nbytes:
            raise WireError("array size does not match its shape")
        self.spend(2 * nbytes)
        raw = bytes(self.take(nbytes))
        return np.frombuffer(raw, dtype=dt).reshape(shape).copy()

    def _npscalar(self):
        np, dt = self._dtype()
        nbytes = self.u64()
        if nbytes != dt.itemsize:
            raise WireError("numpy scalar of the wrong size")
        return np.frombuffer(bytes(self.take(nbytes)), dtype=dt)[0]


# ------------------------------------------------------------------------------------------------ frames
def write_frame(fd: int, payload: bytes, deadline: float | None = None) -> None:
    """Write one frame to `fd`, waiting at most until `deadline` (time.monotonic()) for the reader."""
    data = memoryview(HEADER.pack(MAGIC, len(payload)) + payload)
    while data:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireTimeout("the other side did not read in time")
            _, w, _ = select.select([], [fd], [], left)
            if not w:
                continue
        try:
            n = os.write(fd, data[:1 << 20])
        except BlockingIOError:
            continue
        data = data[n:]


def _read_exact(fd: int, n: int, deadline: float | None, buf: bytearray) -> None:
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireTimeout("no answer in time")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
        try:
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the other side closed the channel")
        buf += chunk


def read_frame(fd: int, deadline: float | None = None, limit: int = DEFAULT_LIMIT) -> bytes:
    """Read one frame's payload; WireError for a bad header or a payload over `limit` (checked before reading it)."""
    head = bytearray()
    _read_exact(fd, HEADER.size, deadline, head)
    magic, n = HEADER.unpack(bytes(head))
    if magic != MAGIC:
        raise WireError("bad frame header")
    if n > limit:
        raise WireError(f"a message of {n / 1e6:.1f} MB, over the limit of {limit / 1e6:.0f} MB")
    body = bytearray()
    _read_exact(fd, n, deadline, body)
    return bytes(body)
