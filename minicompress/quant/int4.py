"""Packed 4-bit storage: two signed 4-bit codes per byte, so an INT4 weight really takes half a byte.

    packed[i] = (codes[2i] & 0xF) | ((codes[2i + 1] & 0xF) << 4)        uint8 [ceil(size / 2)]
    codes[2i] = ((packed[i] & 0xF) ^ 8) - 8,  codes[2i + 1] = ((packed[i] >> 4) ^ 8) - 8      (sign extension)

The codes are taken flattened in C order; the first of each pair goes in the low nibble, the second in the
high one (the layout of ONNX's INT4 type and of PyTorch's quint4x2), and an odd count leaves the last high
nibble 0. A nibble holds a code in [-8, 7] in two's complement: `& 0xF` keeps its low 4 bits and
`(n ^ 8) - 8` turns 8..15 back into -8..-1. The quantized layers (quantized.py) store weights of at most
4 bits this way and unpack them once, when they build their kernel: the arithmetic stays int8 x uint8.
"""
import numpy as np

INT4_MIN, INT4_MAX = -8, 7


def pack_int4(codes):
    """int8 codes in [-8, 7] (any shape) -> uint8 [ceil(codes.size / 2)], two codes per byte."""
    codes = np.asarray(codes)
    if codes.dtype != np.int8:
        raise TypeError(f"pack_int4: codes must be int8, got {codes.dtype}")
    if codes.size and (codes.min() < INT4_MIN or codes.max() > INT4_MAX):
        raise ValueError(f"pack_int4: codes must lie in [{INT4_MIN}, {INT4_MAX}], got [{codes.min()}, {codes.max()}]")
    nibbles = codes.reshape(-1).view(np.uint8) & np.uint8(0xF)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return nibbles[0::2] | (nibbles[1::2] << np.uint8(4))


def unpack_int4(packed, shape):
    """uint8 [ceil(size / 2)] from pack_int4 -> the int8 codes of `shape`."""
    packed = np.asarray(packed)
    size = int(np.prod(shape))
    if packed.dtype != np.uint8 or packed.shape != ((size + 1) // 2,):
        raise ValueError(f"unpack_int4: expected uint8 of shape ({(size + 1) // 2},) for {tuple(shape)} codes, "
                         f"got {packed.dtype} {packed.shape}")
    nibbles = np.empty(2 * packed.size, np.uint8)
    nibbles[0::2], nibbles[1::2] = packed & np.uint8(0xF), packed >> np.uint8(4)
    codes = (nibbles ^ np.uint8(8)).view(np.int8) - np.int8(8)
    return codes[:size].reshape(shape)
