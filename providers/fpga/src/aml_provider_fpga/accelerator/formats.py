"""Narrow-precision block formats of the emulated accelerator.

Every format here is a *block* format: the values along a dot product's reduction dimension are
cut into blocks of ``block_size`` consecutive elements, each block shares one scale that is a
power of two, and each element keeps its own narrow value. ``quantize(x, axis)`` returns the
values the hardware would multiply, dequantised back to float32, so the caller can do the dot
product in float32 (the hardware's wide accumulator).

Two families:

* **MSFP** (Microsoft Floating Point, Brainwave): block floating point. Each block shares an
  8-bit exponent; each element is sign + ``mantissa_bits`` magnitude bits with *no* implicit
  leading one (sign-magnitude integer times 2^(shared exponent)). MSFP12 keeps 3 mantissa
  bits and MSFP16 keeps 7, the block ("bounding box") is 16 elements: the NeurIPS 2020
  paper's cost table (``docs/fpga.md`` says which parts of the layout are inferred).
* **OCP Microscaling (MX) v1.0**: blocks of 32 with one E8M0 scale and elements of FP8
  (E4M3, E5M2), FP6 (E2M3, E3M2), FP4 (E2M1) or INT8. The element types are ml-dtypes'
  own; the shared scale follows Microsoft's reference code (``microxcaling`` ``_quantize_mx``).

Rounding, for every format: round to nearest, ties to even (``numpy.rint`` for the integer
mantissas, ml-dtypes' casts for the MX float elements), after saturating to the element's
largest magnitude, so no value ever overflows to inf or NaN. The shared exponent is the
floor of log2 of the block's largest magnitude, clamped to the 8-bit exponent's range
[-127, 127]: a block whose values are all below 2^-127 gets the smallest scale and its
elements round toward zero (subnormal scales flush, as the hardware's 8-bit exponent must).
An all-zero block stays zero.
"""

from __future__ import annotations

import math

import attrs
import ml_dtypes
import numpy as np

#: Range of an 8-bit shared exponent (MSFP's and MX's E8M0, whose 0xFF is NaN and never used).
SHARED_EXPONENT_MIN = -127
SHARED_EXPONENT_MAX = 127


@attrs.frozen
class BlockFormat:
    """One block format: how many elements share a scale and what each element keeps.

    ``element`` is either ``"int"`` (sign-magnitude integers of ``mantissa_bits`` magnitude
    bits, scaled so that the block maximum lands in the top binade: MSFP and MXINT8) or the
    name of an ml-dtypes float type (MX float elements).
    """

    name: str
    block_size: int
    element: str
    #: Magnitude bits of an integer element (MSFP: 3 or 7; MXINT8: 7, i.e. 1.xxxxxx).
    mantissa_bits: int = 0
    #: Exponent of the element type's largest binade (emax_elem in the MX reference code).
    element_emax: int = 0

    @property
    def bits_per_element(self) -> float:
        """Storage cost per element including its share of the 8-bit scale."""
        if self.element == "int":
            own = 1 + self.mantissa_bits
        else:
            own = ml_dtypes.finfo(getattr(ml_dtypes, self.element)).bits
        return own + 8 / self.block_size

    def quantize(self, values: np.ndarray, axis: int = -1) -> np.ndarray:
        """Return ``values`` as the hardware holds them (dequantised to float32).

        Blocks run along ``axis`` (the reduction dimension); a last partial block is padded
        with zeros, which changes neither its maximum nor its other elements.
        """
        array = np.asarray(values, dtype=np.float32)
        if array.size == 0:
            return array.copy()
        moved = np.moveaxis(array, axis, -1)
        length = moved.shape[-1]
        padded_length = math.ceil(length / self.block_size) * self.block_size
        if padded_length != length:
            pad = [(0, 0)] * (moved.ndim - 1) + [(0, padded_length - length)]
            moved = np.pad(moved, pad)
        blocks = moved.reshape(*moved.shape[:-1], padded_length // self.block_size, self.block_size)
        quantized = self._quantize_blocks(blocks).reshape(*moved.shape[:-1], padded_length)
        return np.moveaxis(quantized[..., :length], -1, axis)

    def shared_exponents(self, blocks: np.ndarray) -> np.ndarray:
        """The power-of-two scale exponent of each block (last axis = block elements)."""
        largest = np.max(np.abs(blocks), axis=-1, keepdims=True)
        with np.errstate(divide="ignore"):
            top = np.floor(np.log2(largest))
        # An all-zero block: any scale encodes it; use the smallest, as the MX reference does.
        top = np.where(largest > 0, top, SHARED_EXPONENT_MIN)
        if self.element == "int":
            # The block maximum's leading bit becomes the integer's top magnitude bit.
            exponent = top - (self.mantissa_bits - 1)
        else:
            exponent = top - self.element_emax
        return np.clip(exponent, SHARED_EXPONENT_MIN, SHARED_EXPONENT_MAX).astype(np.float32)

    def _quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        scale = np.exp2(self.shared_exponents(blocks))
        scaled = blocks / scale
        if self.element == "int":
            largest = float(2**self.mantissa_bits - 1)
            elements = np.clip(np.rint(scaled), -largest, largest)
        else:
            dtype = getattr(ml_dtypes, self.element)
            largest = float(ml_dtypes.finfo(dtype).max)
            # Saturate first: ml-dtypes turns E4M3 overflow into NaN and E5M2 into inf.
            elements = np.clip(scaled, -largest, largest).astype(dtype).astype(np.float32)
        return (elements * scale).astype(np.float32)


def _mx_float(name: str, dtype_name: str, emax: int) -> BlockFormat:
    return BlockFormat(name=name, block_size=32, element=dtype_name, element_emax=emax)


#: Every format the accelerator emulator runs, by the name a user configures.
FORMATS: dict[str, BlockFormat] = {
    fmt.name: fmt
    for fmt in (
        BlockFormat(name="MSFP12", block_size=16, element="int", mantissa_bits=3),
        BlockFormat(name="MSFP16", block_size=16, element="int", mantissa_bits=7),
        _mx_float("MXFP8_E4M3", "float8_e4m3fn", 8),
        _mx_float("MXFP8_E5M2", "float8_e5m2", 15),
        _mx_float("MXFP6_E2M3", "float6_e2m3fn", 2),
        _mx_float("MXFP6_E3M2", "float6_e3m2fn", 4),
        _mx_float("MXFP4_E2M1", "float4_e2m1fn", 2),
        # MXINT8: sign-magnitude 1.xxxxxx (7 magnitude bits, max 127/64 = 1.984375 times the
        # scale); emax 0, so the integer's top bit carries the block maximum's leading one.
        BlockFormat(name="MXINT8", block_size=32, element="int", mantissa_bits=7),
    )
}


def get_format(name: str) -> BlockFormat:
    """Look a format up by name, case-insensitively; unknown names list the known ones."""
    from .exceptions import UnknownFormat

    for known, fmt in FORMATS.items():
        if known.lower() == name.lower():
            return fmt
    raise UnknownFormat(name, sorted(FORMATS))
