"""Block formats: hand-computed blocks, then properties every format must keep."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aml_provider_fpga.accelerator import FORMATS, get_format
from aml_provider_fpga.accelerator.exceptions import UnknownFormat


def block(values, size):
    """One block of ``size`` elements: the given values, then zeros."""
    out = np.zeros(size, np.float32)
    out[: len(values)] = values
    return out


# -- hand-computed blocks ------------------------------------------------------------------

def test_msfp16_block_shares_the_max_exponent_and_keeps_7_bits():
    # max 1.0 -> shared exponent 0, scale 2^(0-6) = 1/64:
    # 0.3*64 = 19.2 -> 19; -0.7*64 = -44.8 -> -45
    got = get_format("MSFP16").quantize(block([1.0, 0.3, -0.7], 16))
    np.testing.assert_array_equal(got[:4], [1.0, 19 / 64, -45 / 64, 0.0])


def test_msfp12_rounds_to_nearest_even_and_saturates_the_top_mantissa():
    fmt = get_format("MSFP12")  # 3 magnitude bits: integers 0..7 times 2^(top-2)
    # max 1.0 -> scale 1/4: 0.3 -> 1.2 -> 1; -0.7 -> -2.8 -> -3; 0.375 -> 1.5 -> 2 (tie to even);
    # 0.625 -> 2.5 -> 2 (tie to even)
    got = fmt.quantize(block([1.0, 0.3, -0.7, 0.375, 0.625], 16))
    np.testing.assert_array_equal(got[:5], [1.0, 0.25, -0.75, 0.5, 0.5])
    # 1.9375 / (1/4) = 7.75 rounds to 8, which 3 bits cannot hold: saturates to 7 -> 1.75
    assert fmt.quantize(block([1.9375], 16))[0] == 1.75


def test_msfp_blocks_are_16_wide_and_independent():
    fmt = get_format("MSFP12")
    values = np.concatenate([block([8.0, 1.0], 16), block([1.0, 0.3], 16)])
    got = fmt.quantize(values)
    assert got[1] == 0.0  # 1.0 beside 8.0: scale 2, 1/2 = 0.5 rounds to even 0
    assert got[17] == 0.25  # the same 1.0's neighbour in its own block keeps its scale 1/4


def test_mxfp4_e2m1_elements_and_power_of_two_scale():
    fmt = get_format("MXFP4_E2M1")
    assert fmt.block_size == 32
    # max 6 -> floor(log2 6) = 2, minus emax 2 -> scale 1: E2M1 values, ties to even
    got = fmt.quantize(block([6.0, 2.5, 3.5, 0.25, 5.0], 32))
    np.testing.assert_array_equal(got[:5], [6.0, 2.0, 4.0, 0.0, 4.0])
    # max 12 -> scale 2: 12/2 = 6; 3/2 = 1.5 is an E2M1 value; 5/2 = 2.5 ties to even 2
    assert fmt.quantize(block([12.0, 3.0, 5.0], 32))[:3].tolist() == [12.0, 3.0, 4.0]


def test_mxfp8_e4m3_saturates_instead_of_overflowing_to_nan():
    fmt = get_format("MXFP8_E4M3")
    # max 500: floor(log2 500) = 8, minus emax 8 -> scale 1; 500 > 448 saturates to 448
    got = fmt.quantize(block([500.0, -500.0, 1.0], 32))
    np.testing.assert_array_equal(got[:3], [448.0, -448.0, 1.0])


def test_mxint8_is_sign_magnitude_one_point_six_bits():
    fmt = get_format("MXINT8")
    # max 1.0 -> X = 2^0, elements k/64 up to 127/64 = 1.984375
    got = fmt.quantize(block([1.0, 0.3, 1.999], 32))
    np.testing.assert_array_equal(got[:3], [1.0, 19 / 64, 127 / 64])


def test_a_block_below_the_smallest_scale_flushes_to_zero():
    # 2^-149: its exponent clamps to -127 (8-bit shared exponent); 2^-149 / 2^-127 = 2^-22 is
    # below every element's smallest step (E5M2's is 2^-16), so it rounds to 0
    for fmt in FORMATS.values():
        assert fmt.quantize(block([2.0**-149], fmt.block_size))[0] == 0.0, fmt.name


def test_a_block_just_inside_the_scale_range_keeps_its_value():
    # 2^-125 with the scale clamped at 2^-127 is 4 units: representable in every format
    for fmt in FORMATS.values():
        assert fmt.quantize(block([2.0**-125], fmt.block_size))[0] == 2.0**-125, fmt.name


def test_blocks_run_along_the_given_axis():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(40, 3)).astype(np.float32)
    fmt = get_format("MSFP12")
    np.testing.assert_array_equal(fmt.quantize(values, axis=0), fmt.quantize(values.T, 1).T)


def test_unknown_format_names_the_known_ones():
    with pytest.raises(UnknownFormat, match="MSFP16"):
        get_format("msfp11")
    assert get_format("msfp16") is FORMATS["MSFP16"]


# -- properties ----------------------------------------------------------------------------

#: Largest error of an element as a fraction of its block's largest magnitude, by hand:
#: MSFP/MXINT8: one unit of the top binade, 2^(1-m) (saturation of the maximum is one unit);
#: MX floats: saturating the block maximum loses (2^(emax+1) - max) / 2^emax at worst.
ERROR_FRACTION = {
    "MSFP12": 2**-2, "MSFP16": 2**-6, "MXINT8": 2**-6,
    "MXFP8_E4M3": (512 - 448) / 256, "MXFP8_E5M2": (65536 - 57344) / 32768,
    "MXFP6_E2M3": 0.5 / 4, "MXFP6_E3M2": 4 / 16, "MXFP4_E2M1": 2 / 4,
}

format_names = st.sampled_from(sorted(FORMATS))
normal_floats = st.floats(min_value=-(2.0**100), max_value=2.0**100, allow_nan=False,
                          allow_subnormal=False, width=32).filter(
    lambda v: v == 0 or abs(v) > 1e-25)
blocks = arrays(np.float32, st.integers(1, 70), elements=normal_floats)


def test_error_table_covers_every_format():
    assert set(ERROR_FRACTION) == set(FORMATS)


@settings(max_examples=150, deadline=None)
@given(name=format_names, values=blocks)
def test_round_trip_error_is_bounded_by_the_block_maximum(name, values):
    fmt = FORMATS[name]
    got = fmt.quantize(values)
    size = fmt.block_size
    for start in range(0, len(values), size):
        original = values[start:start + size].astype(np.float64)
        largest = np.abs(original).max()
        error = np.abs(got[start:start + size] - original)
        assert np.all(error <= ERROR_FRACTION[name] * largest * (1 + 1e-6))
    assert np.all(np.isfinite(got))


@settings(max_examples=100, deadline=None)
@given(name=format_names, values=blocks)
def test_quantisation_is_sign_symmetric(name, values):
    fmt = FORMATS[name]
    np.testing.assert_array_equal(fmt.quantize(-values), -fmt.quantize(values))


@settings(max_examples=100, deadline=None)
@given(name=format_names, values=blocks)
def test_quantised_values_are_fixed_points(name, values):
    fmt = FORMATS[name]
    once = fmt.quantize(values)
    np.testing.assert_array_equal(fmt.quantize(once), once)


@settings(max_examples=100, deadline=None)
@given(name=format_names, value=normal_floats, length=st.integers(1, 64))
def test_an_all_equal_block_stays_all_equal_and_close(name, value, length):
    fmt = FORMATS[name]
    got = fmt.quantize(np.full(length, value, np.float32))
    assert len(set(got.tolist())) == 1
    assert abs(got[0] - value) <= ERROR_FRACTION[name] * abs(value) * (1 + 1e-6)


@given(name=format_names, length=st.integers(1, 100))
def test_a_zero_block_stays_zero(name, length):
    got = FORMATS[name].quantize(np.zeros(length, np.float32))
    assert not np.any(got) and not np.any(np.signbit(got))


@settings(max_examples=50, deadline=None)
@given(name=format_names, exponent=st.integers(-126, 126))
def test_powers_of_two_are_exact(name, exponent):
    value = math.ldexp(1.0, exponent)
    assert FORMATS[name].quantize(np.array([value, -value], np.float32)).tolist() == \
        [value, -value]


def smallest_step(fmt):
    """The finest value a block can hold: the element's smallest step at the scale 2^-127."""
    if fmt.element == "int":
        return 2.0**-127
    return 2.0**-127 * float(ml_dtypes.finfo(getattr(ml_dtypes, fmt.element)).smallest_subnormal)


@settings(max_examples=80, deadline=None)
@given(name=format_names, exponent=st.integers(-149, -120), mantissa=st.floats(1, 1.99))
def test_subnormal_scales_round_to_the_nearest_smallest_step(name, exponent, mantissa):
    # Near and below the 8-bit exponent's range the scale clamps at 2^-127: a value then lands
    # on the nearest multiple of the format's smallest step, never further than half of it.
    fmt = FORMATS[name]
    value = np.float32(mantissa * 2.0**exponent)
    got = fmt.quantize(np.array([value, -value], np.float32))
    assert got[0] == -got[1]
    assert abs(float(got[0]) - float(value)) <= max(smallest_step(fmt) / 2,
                                                    ERROR_FRACTION[name] * float(value))
