"""512-bit SIMD values in Numba: a vector type and the five intrinsics the VNNI GEMM needs.

LLVM does not turn plain loops into `vpdpbusd` (AVX-512 VNNI: 64 unsigned x signed byte products summed in
groups of 4 into 16 int32 lanes, one instruction). A Numba `@intrinsic` lets a kernel emit any LLVM IR, so we
give Numba a type for one 512-bit register seen as 16 int32 lanes (`int32x16`, LLVM `<16 x i32>`) and write

    v_zeros()                      -> int32x16 of zeros
    v_load(arr, offset)            -> 64 bytes of `arr` starting at element `offset` (unaligned load)
    v_broadcast4(arr, offset)      -> the 4 bytes at element `offset` of a byte array, repeated 16 times
    v_dpbusd(acc, a_u8, b_s8)      -> acc + per-lane dot products of 4 uint8 (a) by 4 int8 (b)
                                      (LLVM intrinsic llvm.x86.avx512.vpdpbusd.512, no saturation)
    v_store(arr, offset, v)        stores the 16 int32 lanes of v into arr[offset:offset + 16] (or 64 bytes)

A kernel written with them reads like C with Intel intrinsics (`_mm512_dpbusd_epi32`); LLVM keeps the
int32x16 variables in zmm registers. Offsets are in elements of `arr` and are NOT bounds-checked: the
callers (vnni.py) guarantee them. These functions only compile where the CPU has AVX-512 VNNI: dispatch
(`kernels.cpu`) never calls them elsewhere, and they cannot run under NUMBA_DISABLE_JIT.
Reference: Intel 64 and IA-32 Architectures Software Developer's Manual, VPDPBUSD.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic, models, register_model

VECTOR_IR = ir.VectorType(ir.IntType(32), 16)


class Int32x16Type(types.Type):
    """Numba type of one 512-bit register holding 16 int32 lanes."""

    def __init__(self):
        super().__init__(name="int32x16")


int32x16 = Int32x16Type()


@register_model(Int32x16Type)
class Int32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, VECTOR_IR)


def _element_pointer(context, builder, array_type, array_value, offset):
    array = context.make_array(array_type)(context, builder, array_value)
    return builder.gep(array.data, [offset])


@intrinsic
def v_zeros(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(VECTOR_IR, None)
    return int32x16(), codegen


@intrinsic
def v_load(typingctx, arr, offset):
    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load(builder.bitcast(pointer, VECTOR_IR.as_pointer()), align=1)
    return int32x16(arr, types.intp), codegen


@intrinsic
def v_broadcast4(typingctx, arr, offset):
    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        word = builder.load(builder.bitcast(pointer, ir.IntType(32).as_pointer()), align=1)
        lane0 = builder.insert_element(ir.Constant(VECTOR_IR, None), word, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(lane0, lane0, ir.Constant(VECTOR_IR, None))   # splat lane 0
    return int32x16(arr, types.intp), codegen


@intrinsic
def v_dpbusd(typingctx, acc, a_u8, b_s8):
    def codegen(context, builder, signature, args):
        function_type = ir.FunctionType(VECTOR_IR, [VECTOR_IR, VECTOR_IR, VECTOR_IR])
        vpdpbusd = cgutils.get_or_insert_function(builder.module, function_type, "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(vpdpbusd, list(args))
    return int32x16(int32x16, int32x16, int32x16), codegen


@intrinsic
def v_store(typingctx, arr, offset, value):
    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(pointer, VECTOR_IR.as_pointer()), align=1)
        return context.get_dummy_value()
    return types.none(arr, types.intp, int32x16), codegen
